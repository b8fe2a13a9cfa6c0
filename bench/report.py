"""The table printed to stdout and the JSON written to bench/results/."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench.timing import Measurement

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _value(x: float, unit: str) -> str:
    return f"{x:,.0f} {unit}" if x >= 100 else f"{x:.3g} {unit}"


def table(measurements: list[Measurement], checks: dict[str, float], min_cosine: float) -> str:
    rows = [("benchmark", "ours", "reference", "ratio", "target", "result")]
    for m in measurements:
        rows.append((m.name, _value(m.ours, m.unit), _value(m.reference, m.unit), f"{m.ratio:.2f}x", m.target_text,
                     "PASS" if m.passed else "MISS"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    for m in measurements:
        spread = m.details.get("ratios") or [m.ratio]
        lines.append(f"  {m.name}: ours = {m.ours_label}, reference = {m.reference_label}; median of {m.reps} "
                     f"repetitions, ratios {min(spread):.2f}-{max(spread):.2f}")
        if m.details.get("note"):
            lines.append(f"    {m.details['note']}")
    for name, value in checks.items():
        verdict = "PASS" if value > min_cosine else "FAIL"
        lines.append(f"  like-for-like check, {name}: min cosine(ours, Chroma) = {value:.6f} "
                     f"(must be > {min_cosine}) {verdict}")
    return "\n".join(lines)


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("onnxruntime", "tokenizers", "chromadb", "llama_cpp_python"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "?"
    return out


def write_json(measurements: list[Measurement], checks: dict[str, float], settings: dict[str, Any],
               path: Path | None = None) -> Path:
    path = path or RESULTS_DIR / "latest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": settings,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                    **_versions()},
        "like_for_like_min_cosine": checks,
        "results": [m.to_dict() for m in measurements],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
