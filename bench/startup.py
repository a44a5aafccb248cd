"""Start-up benchmark: `tuneforge train` vs `llamafactory-cli train`, from the command to the first optimizer step.

    python bench/startup.py [--repeats 3] [--skip-lf]

The workload is bench/train_throughput.py's toy (cpu-tiny: qwen2-like, 4 layers, hidden 256) with its
LLaMA-Factory YAML, cut to one optimizer step: max_steps 1, 8 rows, LoRA rank 8. Both sides run the same
YAML through their own CLI in a fresh process; measured: wall time from process start to exit, which is
start-up (imports, config, tokenizer, preprocessing, model load) + the one step + writing the adapter. The
step itself is milliseconds on the toy, so the figure is the start-up cost. Sides alternate; medians compared.
Also measured: `python -X importtime -c "import tuneforge.cli"` and the dry run (`tuneforge train --dry-run`).
Results: bench/results/startup.json (bench/results.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import train_throughput as toy  # noqa: E402  (bench/ is not a package; its workload and YAML writer)
from results import figure, write_result  # noqa: E402

WORK = ROOT / "bench" / ".work" / "startup"


def one_run(command: list[str], env: dict[str, str]) -> float:
    started = time.time()
    done = subprocess.run(command, env=env, cwd=str(WORK), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return time.time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description="start-up time: tuneforge vs LLaMA-Factory")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-lf", action="store_true")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    model_dir, data_dir = toy.prepare_workload("cpu-tiny")
    env = {**os.environ, "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "DISABLE_VERSION_CHECK": "1", "WANDB_DISABLED": "true", "PYTHONPATH": str(ROOT / "src"),
           "TUNEFORGE_CACHE": str(WORK / "cache"), "HF_DATASETS_CACHE": str(WORK / "hf")}
    sides = {"tuneforge": [sys.executable, "-m", "tuneforge", "train"]}
    if not args.skip_lf:
        sides["LLaMA-Factory"] = [str(toy.lf_cli()), "train"]
    times: dict[str, list[float]] = {side: [] for side in sides}
    for repeat in range(args.repeats):
        for side, command in sides.items():
            config = WORK / f"{side}.yaml"
            toy.write_config(config, model_dir, data_dir, WORK / f"out_{side}", "lora", toy.TOY_WORKLOAD, 8, False)
            with open(config, "a", encoding="utf-8") as handle:
                handle.write("max_steps: 1\n")  # one optimizer step; the rest of the toy YAML unchanged
            times[side].append(one_run(command + [str(config)], env))
            print(f"[{repeat + 1}/{args.repeats}] {side}: {times[side][-1]:.1f} s", flush=True)
    dry = [one_run([sys.executable, "-m", "tuneforge", "train", "--dry-run", str(WORK / "tuneforge.yaml")], env)
           for _ in range(args.repeats)]
    imports = [one_run([sys.executable, "-c", "import tuneforge.cli"], env) for _ in range(args.repeats)]
    ours = statistics.median(times["tuneforge"])
    print(f"tuneforge train, 1 step: {ours:.1f} s (median of {args.repeats}); dry run {statistics.median(dry):.2f} s; "
          f"`import tuneforge.cli` {statistics.median(imports):.2f} s")
    figures = [figure("train --dry-run seconds", statistics.median(dry), "<= 3", f"median of {args.repeats}")]
    if "LLaMA-Factory" in times:
        lf = statistics.median(times["LLaMA-Factory"])
        print(f"LLaMA-Factory train, 1 step: {lf:.1f} s -> ratio {ours / lf:.2f}")
        figures.insert(0, figure("start -> first optimizer step vs LF (toy)", ours / lf, "<= 0.5",
                                 f"median of {args.repeats}; wall of a 1-step run"))
    print(f"results: {write_result('startup', figures, {'runs_s': times, 'dry_run_s': dry, 'import_s': imports})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
