"""Real answers of the local arms to eval/labels/questions.jsonl, for hand labelling.

Copies the Debian documents the questions are about into a temporary folder (with file extensions),
ingests them into a knowledge base in a temporary data directory, runs the question set on the four
local arms and writes every answer with its retrieved sources as JSONL (one line per question x arm).

    .venv/bin/python eval/labels/local_answers.py --out /tmp/local_answers.jsonl

The labelled set (answers.jsonl) was made from such a run; the answers are stored there, so nothing
here is needed to check the grader. Needs the documents under /usr/share (Debian) and the local model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# name in the knowledge base -> file on a Debian machine
DOCUMENTS = {
    "Apache-2.0.txt": "/usr/share/common-licenses/Apache-2.0",
    "MPL-2.0.txt": "/usr/share/common-licenses/MPL-2.0",
    "GPL-3.txt": "/usr/share/common-licenses/GPL-3",
    "CC0-1.0.txt": "/usr/share/common-licenses/CC0-1.0",
    "BSD.txt": "/usr/share/common-licenses/BSD",
    "rootless-builds.txt": "/usr/share/doc/dpkg/spec/rootless-builds.txt",
    "triggers.txt": "/usr/share/doc/dpkg/spec/triggers.txt",
    "protected-field.txt": "/usr/share/doc/dpkg/spec/protected-field.txt",
    "users-and-groups.html": "/usr/share/doc/base-passwd/users-and-groups.html",
    "man-db-FAQ.txt": "/usr/share/doc/man-db/FAQ",
    "The-Basics.html": "/usr/share/doc/libffi8/html/The-Basics.html",
    "Size-and-Alignment.html": "/usr/share/doc/libffi8/html/Size-and-Alignment.html",
    "Memory-Usage.html": "/usr/share/doc/libffi8/html/Memory-Usage.html",
    "Thread-Safety.html": "/usr/share/doc/libffi8/html/Thread-Safety.html",
    "Missing-Features.html": "/usr/share/doc/libffi8/html/Missing-Features.html",
    "http.md": "/usr/share/doc/nodejs/api/http.md",
    "zlib.md": "/usr/share/doc/nodejs/api/zlib.md",
    "child_process.md": "/usr/share/doc/nodejs/api/child_process.md",
}


def interleaved(path: Path, out: Path) -> None:
    """The question set with tune and held-out questions alternating, so that any prefix of a run has both."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    parts = [[r for r in rows if r["part"] == p] for p in ("tune", "heldout")]
    mixed = [r for pair in zip(*parts) for r in pair]
    longer = max(parts, key=len)
    mixed += longer[len(min(parts, key=len)):]
    out.write_text("".join(json.dumps(r) + "\n" for r in mixed))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--arms", default="baseline,rag,finetuned,hybrid")
    ap.add_argument("--top-k", type=int, default=1)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--data-dir", type=Path, help="keep the knowledge base and the run here (default: a temporary "
                                                  "folder); with --dump-only, write out what a run there has")
    ap.add_argument("--dump-only", action="store_true")
    ap.add_argument("--run-name", default="labels")
    ap.add_argument("--no-ingest", action="store_true", help="the knowledge base in --data-dir is there already")
    args = ap.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data_dir or Path(tmp, "data")
        common = ["--data-dir", str(data), "--collection", "labels"]
        if not args.dump_only:
            docs = Path(tmp, "docs")
            docs.mkdir()
            for name, path in DOCUMENTS.items():
                shutil.copyfile(path, docs / name)
            if not args.no_ingest:
                subprocess.run([python, "-m", "lib", "ingest", str(docs), *common], cwd=ROOT, check=True)
            questions = Path(tmp, "questions.jsonl")
            interleaved(HERE / "questions.jsonl", questions)
            run = [python, "-m", "lib", "eval", "--set", str(questions), "--arms", args.arms,
                   "--top-k", str(args.top_k), "--run-name", args.run_name, *common]
            if args.limit:
                run += ["--limit", str(args.limit)]
            subprocess.run(run, cwd=ROOT, check=True)
        dump = ("import json, sys; from pathlib import Path; from lib import engine, evalrun; "
                "from lib.settings import load_settings; "
                "ws = engine.workspace_for(load_settings(data_dir=Path(sys.argv[1]), collection='labels')); "
                "print(json.dumps(evalrun.export_json(ws, sys.argv[2])))")
        out = subprocess.run([python, "-c", dump, str(data), args.run_name], cwd=ROOT, check=True,
                             capture_output=True, text=True)
    exported = json.loads(out.stdout)
    with args.out.open("w") as f:
        for a in exported["answers"]:
            res = a["result"]
            f.write(json.dumps({"question_id": a["question_id"], "arm": a["arm"], "answer": res.get("answer", ""),
                                "error": res.get("error"),
                                "sources": [s["text"] for s in res.get("sources") or []],
                                "source_documents": [s["document"] for s in res.get("sources") or []]}) + "\n")
    print(f"wrote {len(exported['answers'])} answers to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
