"""The JSON every benchmark writes, and the machine it ran on (standard library only: it also runs in LF's venv).

A benchmark calls `write_result(name, figures, details)`; it writes bench/results/<name>.json:

    {
      "benchmark": "preprocess",                      # the file's name
      "measured_at": "2026-12-03T17:30:00Z",
      "machine": {"cpu": "...", "cores": 2, "flags": ["avx2", "avx512_bf16", ...], "shared": true|false|null},
      "figures": [                                    # one row of `make bench-all`'s table each
        {"name": "preprocess speed vs LF, 1 worker",
         "ratio": 3.1,                                # tuneforge / LLaMA-Factory (or the stated quotient)
         "goal": ">= 5",                              # "<op> <number>", op one of >=, <=
         "holds": false,
         "note": "median of 3"}                      # optional
      ],
      "details": {...}                                # anything else the benchmark wants to keep
    }

`bench/all.py` runs the benchmarks and prints every figure of every results file as one table.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "fma")


def machine() -> dict:
    """CPU model, cores, the CPU flags that decide bf16/fp32 speed, and whether other jobs share the machine."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name") and model in ("", platform.machine()):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    flags = [flag for flag in FLAGS_OF_INTEREST if flag in present]
                    break
    except OSError:
        pass
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpu": model, "cores": cores, "flags": flags, "load_1min": load,
            "shared": None if load is None else load > cores * 0.75}


def figure(name: str, ratio: float, goal: str, note: str = "") -> dict:
    """One table row; `goal` is "<op> <number>" with op >= or <=."""
    op, value = goal.split()
    if op not in (">=", "<="):
        raise ValueError(f"goal {goal!r}: use '>= N' or '<= N'")
    holds = ratio >= float(value) if op == ">=" else ratio <= float(value)
    return {"name": name, "ratio": round(ratio, 3), "goal": goal, "holds": holds, **({"note": note} if note else {})}


def write_result(benchmark: str, figures: list[dict], details: dict | None = None) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{benchmark}.json"
    payload = {"benchmark": benchmark, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": machine(), "figures": figures, "details": details or {}}
    path.write_text(json.dumps(payload, indent=2))
    return path
