"""DPO LoRA benchmark: tuneforge vs LLaMA-Factory 0.9.5, steps/s and peak RSS side by side (not a test).

    python bench/dpo.py [--max-samples 60] [--threads 1] [--repeats 1] [--skip-lf] [--preset cpu-tiny|real]

The workload: train_throughput.py's model (cpu-tiny: Qwen2-like, 4 layers x 256, random weights, small
BPE), LLaMA-Factory's dpo_en_demo rows (sharegpt preference pairs, from $LF_DEMO_DIR or
../shared/data/llamafactory-demo), template qwen, cutoff_len 512, batch 2 pairs, one epoch over the first
--max-samples rows, fp32, gradient checkpointing on, LoRA rank 8 on all linear layers, pref_loss sigmoid,
pref_beta 0.1; the reference is the adapter-off policy on both sides.

Both sides run the SAME LLaMA-Factory YAML through their own CLI, one after the other in fresh
subprocesses, with train_throughput.py's runner (LF_VENV as there; bench/preprocess.py builds that venv,
whose trl 0.24 LLaMA-Factory's DPO trainer needs). Measured per run: steps/s = optimizer steps /
train_runtime (the Trainer's own timer, training loop only), train tokens/s (non-padding input tokens of
the chosen and rejected rows), peak RSS of the process, wall time of the command.

--preset real: SmolLM2-135M-Instruct (train_throughput.py's real workload: the dequantized GGUF weights in the
folder both sides can read), template smollm2, cutoff_len 256, batch 2 pairs, 20 pairs (10 steps), logging
every step. MFU as in train_throughput.py: 6 * N * train tokens/s / the measured GEMM peak (the reference
model's forward is not counted, on either side).

Results: a table on stdout, bench/.work/dpo/results.json, and bench/results/dpo_<preset>.json (the figures of
`make bench-all`: tokens/s and peak RSS vs LF).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_throughput as tt  # noqa: E402  (the shared runner: workload model, subprocess, measurements)

WORK = tt.ROOT / "bench" / ".work" / "dpo"
DATASET = "dpo_en_demo"
SPEED_GOAL = ">= 1.5"  # issue 18, tuneforge / LF tokens/s
TOY_WORKLOAD = tt.Workload(template="qwen", cutoff_len=512, batch_size=2, max_samples=60, logging_steps=5)
REAL_WORKLOAD = tt.Workload(template="smollm2", cutoff_len=256, batch_size=2, max_samples=20, logging_steps=1)


def prepare_data() -> Path:
    for folder in tt.DEMO_DIRS:
        source = Path(folder) / f"{DATASET}.json" if folder else None
        if source and source.is_file():
            info = json.loads((source.parent / "dataset_info.json").read_text())[DATASET]
            data_dir = WORK / "data"
            data_dir.mkdir(parents=True, exist_ok=True)
            (data_dir / f"{DATASET}.json").write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
            (data_dir / "dataset_info.json").write_text(json.dumps({DATASET: info}))
            return data_dir
    raise SystemExit(f"{DATASET}.json not found: set LF_DEMO_DIR to LLaMA-Factory's data folder")


def write_config(path: Path, model_dir: Path, data_dir: Path, output_dir: Path, load: tt.Workload,
                 max_samples: int) -> None:
    values = {
        "model_name_or_path": str(model_dir), "stage": "dpo", "do_train": True, "finetuning_type": "lora",
        "lora_rank": 8, "lora_target": "all", "pref_beta": 0.1, "pref_loss": "sigmoid",
        "dataset": DATASET, "dataset_dir": str(data_dir), "template": load.template, "cutoff_len": load.cutoff_len,
        "max_samples": max_samples, "overwrite_cache": True, "preprocessing_num_workers": 1,
        "dataloader_num_workers": 0, "output_dir": str(output_dir), "overwrite_output_dir": True,
        "logging_steps": load.logging_steps, "save_steps": 100000, "plot_loss": False, "report_to": "none",
        "per_device_train_batch_size": load.batch_size, "gradient_accumulation_steps": 1, "learning_rate": 5.0e-5,
        "num_train_epochs": 1.0, "lr_scheduler_type": "cosine", "warmup_ratio": 0.1, "bf16": False, "seed": 42,
        "include_num_input_tokens_seen": "non_padding",
    }
    path.write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in values.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-samples", type=int, default=None,
                        help="preference pairs trained, one epoch at batch 2 (default: 60 on the toys, 20 real)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="alternate the sides this many times; keep the best")
    parser.add_argument("--preset", choices=tt.PRESET_NAMES, default="cpu-tiny")
    parser.add_argument("--skip-lf", action="store_true", help="measure tuneforge only")
    args = parser.parse_args()

    WORK.mkdir(parents=True, exist_ok=True)
    tt.WORK.mkdir(parents=True, exist_ok=True)
    load = REAL_WORKLOAD if args.preset == tt.REAL else TOY_WORKLOAD
    max_samples = args.max_samples or load.max_samples
    model_dir, _ = tt.prepare_workload(args.preset)
    data_dir = prepare_data()
    parameters = tt.parameter_count(model_dir)
    peak = tt.measure_peak(args.threads, bf16=False)
    sides = {"tuneforge": ("ours", [sys.executable, "-m", "tuneforge", "train"])}
    if not args.skip_lf:
        sides["LLaMA-Factory"] = ("lf", [str(tt.lf_cli()), "train"])

    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for repeat in range(args.repeats):
        for side in list(sides) if repeat % 2 == 0 else list(reversed(sides)):
            slug, command = sides[side]
            output_dir = WORK / f"out_{slug}"
            config = WORK / f"{slug}.yaml"
            write_config(config, model_dir, data_dir, output_dir, load, max_samples)
            result = tt.run_side(side, command + [str(config)], {}, output_dir, args.threads, WORK / f"{slug}.log")
            result["steps_per_s"] = result["steps"] / result["train_runtime_s"]
            result["mfu"] = tt.mfu(result["tokens_per_s"], parameters, peak)
            runs[side].append(result)
            print(f"{side:14s} run {repeat + 1}: {result['steps_per_s']:.3f} steps/s, {result['tokens_per_s']:.0f} "
                  f"train tokens/s ({result['steps']} steps in {result['train_runtime_s']:.1f} s), MFU "
                  f"{result['mfu']:.1%}, peak RSS "
                  f"{result['peak_rss_mb']:.0f} MB, wall {result['wall_s']:.1f} s, train_loss "
                  f"{result['train_loss']:.4f}", flush=True)

    best = {side: max(results, key=lambda r: r["steps_per_s"]) for side, results in runs.items()}
    report: dict = {"preset": args.preset, "threads": args.threads, "max_samples": max_samples,
                    "workload": load.__dict__, "parameters": parameters, "gemm_peak": peak, "runs": runs,
                    "best": {side: {k: v for k, v in r.items() if k != "losses"} for side, r in best.items()}}
    print(f"\n| side | steps/s | train tokens/s | MFU | peak RSS MB | train_loss | (DPO LoRA, {args.preset}, "
          f"{parameters / 1e6:.1f}M parameters, threads {args.threads}, best of {args.repeats}) |")
    print("|---|---|---|---|---|---|---|")
    for side, result in best.items():
        print(f"| {side} | {result['steps_per_s']:.3f} | {result['tokens_per_s']:.0f} | {result['mfu']:.1%} | "
              f"{result['peak_rss_mb']:.0f} | {result['train_loss']:.4f} | |")
    if "LLaMA-Factory" in best:
        ours, theirs = best["tuneforge"], best["LLaMA-Factory"]
        report["steps_per_s_ratio"] = ours["steps_per_s"] / theirs["steps_per_s"]
        report["peak_rss_ratio"] = ours["peak_rss_mb"] / theirs["peak_rss_mb"]
        report["same_tokens"] = ours["tokens"] == theirs["tokens"]
        report["loss_curves"] = curves = tt.compare_losses(ours["losses"], theirs["losses"])
        print(f"| tuneforge / LLaMA-Factory | **{report['steps_per_s_ratio']:.2f}x** | | | "
              f"{report['peak_rss_ratio']:.2f}x | | same tokens: {report['same_tokens']}; loss max abs diff over "
              f"{curves['steps']} logged steps: {curves['max_abs_diff']} |")
        figures = tt.side_figures(f"DPO LoRA ({args.preset})", ours, theirs, SPEED_GOAL, parameters, peak, curves)
        print(f"wrote {tt.write_result(f'dpo_{args.preset}'.replace('-', '_'), figures, report)}")
    (WORK / "results.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
