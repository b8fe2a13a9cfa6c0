"""How often the offline grader agrees with hand labels (eval/labels/answers.jsonl), per class.

    .venv/bin/python -m lib.gradecheck --part heldout          # the figures the README reports
    .venv/bin/python -m lib.gradecheck --part tune --show      # tuning: every disagreement, with its reason

An answer agrees when the grader's pass/fail is the hand label's; an answer with sources also needs the
grader's citation grade (none / correct / wrong) to be the hand label's. Citation agreement is also
reported alone, over the answers that cite.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LABELS = Path(__file__).resolve().parents[1] / "eval" / "labels" / "answers.jsonl"
CLASSES = ("plain", "refusal", "fabrication", "near-miss", "wrong-unit", "swapped-roles", "unit-conversion",
           "incidental", "contrast", "scoped-negation", "question-echo", "citation")
TARGET = 0.90


def load(path: Path = LABELS, part: str | None = None) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if part in (None, "all", r["part"])]


@dataclass
class Tally:
    n: int = 0
    agree: int = 0
    misses: list[dict[str, Any]] = field(default_factory=list)

    @property
    def share(self) -> float | None:
        return self.agree / self.n if self.n else None


def check(rows: list[dict[str, Any]], similarity: Callable[[str, str], float] | None = None
          ) -> tuple[dict[str, Tally], Tally, Tally]:
    """(per class, all answers, cited answers' citation grades)."""
    from lib.grading import grade_answer

    per: dict[str, Tally] = {}
    total, cited = Tally(), Tally()
    for r in rows:
        g = grade_answer(r["question"], r["reference"], r["answer"], r.get("keywords") or (), r["answerable"],
                         similarity, r.get("sources"))
        label = r["label"]
        ok = g.correct == label["correct"]
        if "citations" in label:
            cite_ok = g.citations == label["citations"]
            ok = ok and cite_ok
            if label["citations"] != "none" or g.citations != "none":
                cited.n += 1
                cited.agree += cite_ok
                if not cite_ok:
                    cited.misses.append({**r, "got": g.to_dict()})
        t = per.setdefault(r["class"], Tally())
        for tally in (t, total):
            tally.n += 1
            tally.agree += ok
        if not ok:
            t.misses.append({**r, "got": g.to_dict()})
    return per, total, cited


def embedder_similarity() -> Callable[[str, str], float]:
    from lib.embeddings import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    cache: dict[str, Any] = {}

    def vector(text: str) -> Any:
        if text not in cache:
            cache[text] = embedder.embed([text])[0]
        return cache[text]

    def similarity(a: str, b: str) -> float:
        return float((vector(a) * vector(b)).sum())

    return similarity


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lib.gradecheck", description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["tune", "heldout", "all"], default="heldout")
    ap.add_argument("--file", type=Path, default=LABELS)
    ap.add_argument("--no-embedder", action="store_true", help="grade without the local embedder")
    ap.add_argument("--show", action="store_true", help="print every disagreement")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = load(args.file, args.part)
    per, total, cited = check(rows, None if args.no_embedder else embedder_similarity())
    if args.json:
        print(json.dumps({"part": args.part, "embedder": not args.no_embedder,
                          "classes": {c: {"n": t.n, "agree": t.agree, "share": t.share} for c, t in per.items()},
                          "all": {"n": total.n, "agree": total.agree, "share": total.share},
                          "citations": {"n": cited.n, "agree": cited.agree, "share": cited.share}}))
    else:
        print(f"part {args.part}, {'without' if args.no_embedder else 'with'} the embedder")
        for c in [*CLASSES, *sorted(set(per) - set(CLASSES))]:
            if c in per:
                t = per[c]
                print(f"  {c:16} {t.agree:>4}/{t.n:<4} {t.share:6.1%}")
        print(f"  {'all':16} {total.agree:>4}/{total.n:<4} {total.share:6.1%}")
        if cited.n:
            print(f"  {'cited answers':16} {cited.agree:>4}/{cited.n:<4} {cited.share:6.1%}  (citation grade)")
    if args.show:
        for t in per.values():
            for m in t.misses:
                print(f"\n[{m['class']}] {m['id']}  label {m['label']}  got correct={m['got']['correct']} "
                      f"citations={m['got']['citations']}\n  Q: {m['question']}\n  R: {m['reference']}\n"
                      f"  A: {m['answer'][:300]!r}\n  why: {m['why']}\n  grader: {m['got']['reason']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
