"""Streaming benchmark: peak RSS of `tuneforge train` with `streaming: true` stays flat as the data grows.

    python bench/streaming_rss.py [--rows 1000000 10000000] [--steps 20]

For each size, a jsonl file of that many distinct alpaca rows (generated once under bench/.work/streaming) is
trained on with the toy model of bench/train_throughput.py (LoRA, max_steps --steps, buffer_size 1000,
streaming: true) in a fresh `python -m tuneforge train` process; measured: its peak RSS (wait4's ru_maxrss)
and wall time. A pipeline that materialised the data would grow with the file (10M rows = ~0.6 GB of JSON).
Result: bench/results/streaming.json, figure "peak RSS, largest / smallest" with goal <= 1.1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import train_throughput as toy  # noqa: E402  (its toy model)
from results import figure, write_result  # noqa: E402

WORK = ROOT / "bench" / ".work" / "streaming"


def data_file(rows: int) -> Path:
    folder = WORK / f"data_{rows}"
    path = folder / "rows.jsonl"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp")
        with open(partial, "w", encoding="utf-8") as handle:
            for start in range(0, rows, 100_000):
                handle.write("".join(json.dumps({"instruction": f"Question number {i}: what follows {i}?",
                                                 "output": f"The number {i + 1}."}) + "\n"
                                     for i in range(start, min(rows, start + 100_000))))
        partial.rename(path)
        (folder / "dataset_info.json").write_text(json.dumps({"rows": {"file_name": "rows.jsonl"}}))
    return path


def run(rows: int, steps: int, model_dir: Path) -> dict:
    path = data_file(rows)
    config = WORK / f"stream_{rows}.yaml"
    values = {"model_name_or_path": str(model_dir), "stage": "sft", "do_train": True, "finetuning_type": "lora",
              "lora_rank": 8, "dataset": "rows", "dataset_dir": str(path.parent), "template": "qwen",
              "cutoff_len": 128, "streaming": True, "buffer_size": 1000, "max_steps": steps,
              "per_device_train_batch_size": 4, "output_dir": str(WORK / f"out_{rows}"),
              "overwrite_output_dir": True, "save_steps": 100000, "logging_steps": 10, "report_to": "none"}
    config.write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in values.items()))
    env = {**os.environ, "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": str(ROOT / "src"), "TUNEFORGE_CACHE": str(WORK / "cache"),
           "HF_DATASETS_CACHE": str(WORK / "hf")}
    started = time.time()
    with open(WORK / f"stream_{rows}.log", "w", encoding="utf-8") as log:
        process = subprocess.Popen([sys.executable, "-m", "tuneforge", "train", str(config)], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, cwd=str(WORK))
        _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"training on {rows} rows failed; see {WORK / f'stream_{rows}.log'}")
    return {"rows": rows, "file_mb": path.stat().st_size / 2**20, "peak_rss_mb": usage.ru_maxrss / 1024,
            "wall_s": time.time() - started}


def main() -> int:
    parser = argparse.ArgumentParser(description="peak RSS of streaming training vs data size")
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    model_dir, _ = toy.prepare_workload("cpu-tiny")
    results = []
    for rows in args.rows:
        results.append(run(rows, args.steps, model_dir))
        r = results[-1]
        print(f"{rows:>11,} rows ({r['file_mb']:.0f} MB of jsonl): peak RSS {r['peak_rss_mb']:.0f} MB, "
              f"{r['wall_s']:.1f} s", flush=True)
    ratio = results[-1]["peak_rss_mb"] / results[0]["peak_rss_mb"]
    print(f"peak RSS {args.rows[-1]:,} rows / {args.rows[0]:,} rows: {ratio:.3f}")
    note = f"{args.rows[0]:,} -> {args.rows[-1]:,} rows, {args.steps} steps"
    print(f"results: {write_result('streaming', [figure('streaming peak RSS, largest / smallest data', ratio, '<= 1.1', note)], {'runs': results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
