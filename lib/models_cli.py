"""`python -m lib models list|pull|use|remove|add|measure`: the model catalogue from the command line
(a thin layer over lib.catalogue and lib.modelhub, registered by lib.__main__)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lib.errors import ConfigError


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, ensure_ascii=False), flush=True)


def add_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("models", help="the model catalogue: list, download, use, remove, add a GGUF, measure speed")
    actions = p.add_subparsers(dest="models_action", required=True)
    q = actions.add_parser("list", help="every catalogue model with size, memory, context, licence, speed")
    common(q)
    q = actions.add_parser("pull", help="download a catalogue model (progress on stderr; resumes; checked)")
    q.add_argument("name")
    q.add_argument("--training", action="store_true",
                   help="download its weights for local fine-tuning (safetensors) instead of the GGUF")
    common(q)
    q = actions.add_parser("use", help="make a downloaded model the workspace's model for a role")
    q.add_argument("name", help="a catalogue name, a GGUF added by hand, or ollama:TAG")
    q.add_argument("--role", choices=["base", "finetuned"], default="base")
    common(q)
    q = actions.add_parser("remove", help="delete a downloaded model (and its training weights)")
    q.add_argument("name")
    common(q)
    q = actions.add_parser("add", help="add a .gguf copied by hand (checked by loading it in the local worker)")
    q.add_argument("file", type=Path)
    q.add_argument("--name", help="the name to list it under (default: from the file name)")
    common(q)
    q = actions.add_parser("measure", help="measure a local model's generation speed on this machine")
    q.add_argument("name", nargs="?", default="smollm2-135m", help="default: the bundled model")
    common(q)


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def run(settings: Any, args: argparse.Namespace) -> int:
    from lib import catalogue, modelhub

    action = args.models_action
    if action == "list":
        rows = catalogue.rows(settings)
        if args.json:
            for row in rows:
                _emit(row)
            return 0
        print(f"Model catalogue of {catalogue.catalogue().date} (sizes and parameters: see `--json` for sources)")
        for r in rows:
            from lib.gguf_meta import params_label

            speed = r["speed"]
            tps = f"{speed['tokens_per_s']:g} tokens/s ({speed['source']})" if speed.get("tokens_per_s") else \
                "speed not measured"
            state = "bundled" if r["bundled"] else ("downloaded" if r["downloaded"] else "not downloaded")
            print(f"{r['name']:18} {params_label(r['params']):>6} {r['quantisation']:7} {_size(r['size_bytes']):>8} "
                  f"memory ~{_size(r['memory_bytes'])}, context {r['context'] or '?'}, {r['license'] or '?'}, "
                  f"{tps}; {state}")
        return 0
    if action == "pull":
        return _pull(settings, args)
    if action == "use":
        from lib import engine

        ws = engine.workspace_for(settings, create=False)
        result = catalogue.use(settings, ws, args.name, args.role)
        if args.json:
            _emit({"workspace": ws.name, **result})
        else:
            print(f"workspace {ws.name}: the {args.role} role is now {result['model']}")
        return 0
    if action == "remove":
        found = modelhub.remove(settings.data_dir, modelhub.check_model_name(args.name))
        _emit({"name": args.name, "removed": found}) if args.json else \
            print(f"removed {args.name}" if found else f"{args.name} was not downloaded")
        return 0 if found else 1
    if action == "add":
        got = modelhub.add_file(settings, args.file, args.name)
        _emit({**got.to_dict(), "status": "added"}) if args.json else print(f"added {got.name}: {got.path}")
        return 0
    if action == "measure":
        result = catalogue.measure_speed(settings, args.name)
        if args.json:
            _emit({"name": args.name, **result})
        else:
            print(f"{args.name}: {result['tokens_per_s']} tokens/s generating, {result['prompt_tokens_per_s']} "
                  f"tokens/s reading the prompt ({result['threads']} threads)")
        return 0
    raise ValueError(f"unknown models action {action!r}")


def _pull(settings: Any, args: argparse.Namespace) -> int:
    from lib import modelhub

    cancel = threading.Event()

    def stop(signum: int, frame: object) -> None:  # Cancel in Settings sends SIGTERM; Ctrl-C is the same
        cancel.set()
        raise modelhub.DownloadCancelled("The download was cancelled; what arrived is kept, and downloading again "
                                         "resumes from there.")

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    last = [""]

    def progress(p: modelhub.Progress) -> None:
        line = p.line()
        if line != last[0]:
            last[0] = line
            print(line, file=sys.stderr, flush=True)

    key = f"{args.name}.train" if args.training else args.name
    try:
        if args.training:
            folder = modelhub.pull_training(settings, args.name, progress, cancel)
            files = json.loads((folder / "manifest.json").read_text())["files"]
            out = {"name": args.name, "path": str(folder), "sha256": {f: v["sha256"] for f, v in files.items()},
                   "bytes": sum(v["bytes"] for v in files.values()), "status": "downloaded"}
        else:
            got = modelhub.pull(settings, args.name, progress, cancel)
            out = {"name": got.name, "path": got.path, "sha256": got.sha256, "bytes": got.bytes,
                   "status": "downloaded"}
    except ConfigError as exc:  # HubError among them: unreachable, checksum, disk, cancelled, busy
        reason = getattr(exc, "reason", "invalid")
        state = modelhub.status(settings.data_dir, key) if reason != "invalid" else None
        out = {"name": args.name, "path": None, "sha256": None, "bytes": state.done_bytes if state else 0,
               "status": "cancelled" if reason == "cancelled" else "failed", "reason": reason, "error": str(exc)}
        if not args.json:
            print(f"error: {exc}", file=sys.stderr)
        else:
            _emit(out)
        return 130 if reason == "cancelled" else 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if args.json:
        _emit(out)
    else:
        print(f"{out['status']} {out['name']}: {out['path']} ({out['bytes']:,} bytes, checked)")
    return 0
