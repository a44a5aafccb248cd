"""Training throughput benchmark: tuneforge vs LLaMA-Factory 0.9.5, SFT LoRA and SFT full (not a test).

    python bench/train_throughput.py [--methods lora full] [--threads 1] [--max-samples 200] [--repeats 1]
                                     [--skip-lf] [--with-padded] [--preset cpu-tiny|qwen2-0.5b] [--bf16]

The workload (fixed): a Qwen2-like causal LM built here with random weights (cpu-tiny: 4 layers, hidden 256,
~8k-token byte-level BPE trained on the data), LLaMA-Factory's alpaca_en_demo rows (from $LF_DEMO_DIR or
../shared/data/llamafactory-demo when present, else tuneforge's bundled demo rows, repeated and
numbered), template qwen, cutoff_len 512, batch 4, one epoch over the first --max-samples rows, fp32,
gradient checkpointing on (both sides' default). LoRA: rank 8 on all linear layers.

Both sides run the SAME LLaMA-Factory YAML (only output_dir differs) through their own CLI, each in its own
subprocess, one after the other, with the same OMP/MKL thread count:
    tuneforge:      <this python> -m tuneforge train run.yaml
    LLaMA-Factory:  $LF_VENV/bin/llamafactory-cli train run.yaml     (LF_VENV defaults to bench/.lfvenv)
Measured per run: train tokens/s = non-padding input tokens the Trainer saw (include_num_input_tokens_seen:
non_padding, so each side counts its own tokenization) / train_runtime (the Trainer's own timer: the
training loop only, no imports, preprocessing or final save); peak RSS of the process (wait4's ru_maxrss);
wall time of the whole command. The loss curves (logging_steps 5) are compared step by step.
With --repeats N the sides alternate N times and the best tokens/s of each side is reported, because
other processes on a shared machine only ever slow a run down. --with-padded adds tuneforge with its
padding-free batches switched off (TUNEFORGE_PADDING_FREE=0), which shows what they contribute.

Results: a table on stdout and bench/.work/train_throughput/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work" / "train_throughput"
DEMO_DIRS = [os.environ.get("LF_DEMO_DIR", ""), str(ROOT.parent / "shared" / "data" / "llamafactory-demo")]
DATASET = "alpaca_en_demo"
PRESETS = {
    # name: (hidden, layers, heads, kv_heads, intermediate, tokenizer vocab)
    "cpu-tiny": (256, 4, 4, 2, 1376, 8000),
    "qwen2-0.5b": (896, 24, 14, 2, 4864, 8000),  # Qwen2-0.5B's shape; the vocabulary stays the small BPE
}
METHODS = {  # finetuning_type -> extra YAML keys
    "lora": {"finetuning_type": "lora", "lora_rank": 8, "lora_target": "all", "learning_rate": 1.0e-3},
    "full": {"finetuning_type": "full", "learning_rate": 1.0e-4},
}


# ------------------------------------------------------------------------------------------- workload


def _demo_rows() -> list[dict]:
    for folder in DEMO_DIRS:
        path = Path(folder) / "alpaca_en_demo.json" if folder else None
        if path and path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    bundled = json.loads((ROOT / "src" / "tuneforge" / "demo" / "data" / "demo_alpaca.json").read_text())
    # The bundled demo is small: repeat it, numbered so that rows differ, up to alpaca_en_demo's size.
    return [{**row, "instruction": f"({i}) {row['instruction']}"}
            for i, row in enumerate(bundled[i % len(bundled)] for i in range(1000))]


def prepare_workload(preset: str) -> tuple[Path, Path]:
    """(model dir, dataset dir), built once under bench/.work/train_throughput."""
    hidden, layers, heads, kv_heads, intermediate, vocab = PRESETS[preset]
    model_dir = WORK / f"model_{preset}"
    data_dir = WORK / "data"
    rows = _demo_rows()
    if not (data_dir / "dataset_info.json").is_file():
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / f"{DATASET}.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
        (data_dir / "dataset_info.json").write_text(json.dumps({DATASET: {"file_name": f"{DATASET}.json"}}))
    if not (model_dir / "config.json").is_file():
        sys.path.insert(0, str(ROOT / "src"))
        from tuneforge.testing.tiny_model import build_tiny_model

        print(f"building the {preset} model in {model_dir} ...", flush=True)
        corpus = [" ".join(str(row.get(key, "")) for key in ("instruction", "input", "output")) for row in rows]
        build_tiny_model(model_dir, arch="qwen2", hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads,
                         intermediate=intermediate, vocab_size=vocab, tie_word_embeddings=True,
                         initializer_range=0.02, max_positions=4096, tokenizer_kwargs={"extra_corpus": corpus})
    return model_dir, data_dir


def write_config(path: Path, model_dir: Path, data_dir: Path, output_dir: Path, method: str,
                 max_samples: int, bf16: bool) -> None:
    """One LLaMA-Factory YAML; both sides read it unchanged."""
    values = {
        "model_name_or_path": str(model_dir), "stage": "sft", "do_train": True, **METHODS[method],
        "dataset": DATASET, "dataset_dir": str(data_dir), "template": "qwen", "cutoff_len": 512,
        "max_samples": max_samples, "overwrite_cache": True, "preprocessing_num_workers": 1,
        "dataloader_num_workers": 0, "output_dir": str(output_dir), "overwrite_output_dir": True,
        "logging_steps": 5, "save_steps": 100000, "plot_loss": False, "report_to": "none",
        "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "num_train_epochs": 1.0,
        "lr_scheduler_type": "cosine", "warmup_ratio": 0.1, "bf16": bf16, "seed": 42,
        "include_num_input_tokens_seen": "non_padding",
    }
    path.write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in values.items()))


# ------------------------------------------------------------------------------------------ measuring


def lf_cli() -> Path:
    cli = Path(os.environ.get("LF_VENV") or ROOT / "bench" / ".lfvenv") / "bin" / "llamafactory-cli"
    if not cli.exists():
        raise SystemExit(f"LLaMA-Factory not found at {cli}: set LF_VENV to a venv with llamafactory==0.9.5 "
                         "(bench/preprocess.py builds one in bench/.lfvenv), or pass --skip-lf")
    return cli


def run_side(side: str, command: list[str], extra_env: dict[str, str], output_dir: Path, threads: int,
             log_path: Path) -> dict:
    """Run one side to completion; read what its Trainer wrote into output_dir."""
    shutil.rmtree(output_dir, ignore_errors=True)
    env = {**os.environ, **extra_env, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(WORK / f"hf_datasets_{side}"), "TUNEFORGE_CACHE": str(WORK / "tuneforge_cache"),
           "DISABLE_VERSION_CHECK": "1", "WANDB_DISABLED": "true", "PYTHONPATH": str(ROOT / "src")}
    start = time.time()
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(WORK))
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.time() - start
    code = os.waitstatus_to_exitcode(status)
    results_file = output_dir / "all_results.json"
    if code != 0 or not results_file.is_file():
        tail = log_path.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{side} failed (exit {code}); log tail ({log_path}):\n{tail}")
    results = json.loads(results_file.read_text())
    state = json.loads((output_dir / "trainer_state.json").read_text())
    tokens = state.get("num_input_tokens_seen") or 0
    losses = {entry["step"]: entry["loss"] for entry in state["log_history"] if "loss" in entry}
    return {"tokens": tokens, "train_runtime_s": results["train_runtime"], "train_loss": results["train_loss"],
            "tokens_per_s": tokens / results["train_runtime"], "steps": state["global_step"],
            "peak_rss_mb": usage.ru_maxrss / 1024, "wall_s": wall, "losses": losses}


def compare_losses(ours: dict[int, float], theirs: dict[int, float]) -> dict:
    steps = sorted(set(ours) & set(theirs))
    diffs = [abs(ours[step] - theirs[step]) for step in steps]
    return {"steps": len(steps), "max_abs_diff": max(diffs) if diffs else None,
            "ours_first_last": (ours[steps[0]], ours[steps[-1]]) if steps else None,
            "lf_first_last": (theirs[steps[0]], theirs[steps[-1]]) if steps else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=["lora", "full"])
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP/MKL threads for both sides (1: on a shared machine, a busy neighbour makes 2 "
                        "threads many times slower)")
    parser.add_argument("--max-samples", type=int, default=200, help="rows trained (one epoch, batch 4)")
    parser.add_argument("--repeats", type=int, default=1, help="alternate the sides this many times; keep the best")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-tiny")
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision (for the GPU preset)")
    parser.add_argument("--skip-lf", action="store_true", help="measure tuneforge only")
    parser.add_argument("--with-padded", action="store_true",
                        help="also run tuneforge with padded batches (TUNEFORGE_PADDING_FREE=0)")
    args = parser.parse_args()

    WORK.mkdir(parents=True, exist_ok=True)
    model_dir, data_dir = prepare_workload(args.preset)
    # side -> (file-name slug, command, extra environment)
    ours = [sys.executable, "-m", "tuneforge", "train"]
    sides = {"tuneforge": ("ours", ours, {})}
    if args.with_padded:
        sides["tuneforge padded"] = ("ours_padded", ours, {"TUNEFORGE_PADDING_FREE": "0"})
    if not args.skip_lf:
        sides["LLaMA-Factory"] = ("lf", [str(lf_cli()), "train"], {})

    report: dict = {"preset": args.preset, "threads": args.threads, "max_samples": args.max_samples,
                    "bf16": args.bf16, "methods": {}}
    for method in args.methods:
        runs: dict[str, list[dict]] = {side: [] for side in sides}
        for repeat in range(args.repeats):
            order = list(sides) if repeat % 2 == 0 else list(reversed(sides))
            for side in order:
                slug, command, extra_env = sides[side]
                output_dir = WORK / f"out_{slug}_{method}"
                config = WORK / f"{slug}_{method}.yaml"
                write_config(config, model_dir, data_dir, output_dir, method, args.max_samples, args.bf16)
                result = run_side(side, command + [str(config)], extra_env, output_dir, args.threads,
                                  WORK / f"{slug}_{method}.log")
                runs[side].append(result)
                print(f"[{method}] {side:16s} run {repeat + 1}: {result['tokens_per_s']:7.1f} train tokens/s "
                      f"({result['tokens']} tokens in {result['train_runtime_s']:.1f} s, {result['steps']} steps), "
                      f"peak RSS {result['peak_rss_mb']:.0f} MB, wall {result['wall_s']:.1f} s, "
                      f"train_loss {result['train_loss']:.4f}", flush=True)
        best = {side: max(results, key=lambda r: r["tokens_per_s"]) for side, results in runs.items()}
        entry: dict = {"runs": runs, "best": {side: {k: v for k, v in r.items() if k != "losses"}
                                              for side, r in best.items()}}
        if "tuneforge padded" in best:
            padded = best["tuneforge padded"]["tokens_per_s"]
            entry["padding_free_gain"] = best["tuneforge"]["tokens_per_s"] / padded
        if "LLaMA-Factory" in best:
            ours, theirs = best["tuneforge"], best["LLaMA-Factory"]
            entry["speedup"] = ours["tokens_per_s"] / theirs["tokens_per_s"]
            entry["same_tokens"] = ours["tokens"] == theirs["tokens"]
            entry["loss_curves"] = compare_losses(ours["losses"], theirs["losses"])
        report["methods"][method] = entry

    (WORK / "results.json").write_text(json.dumps(report, indent=2))
    print(f"\n| method | side | train tokens/s | peak RSS MB | train_loss | (threads {args.threads}, "
          f"{args.preset}, best of {args.repeats}) |")
    print("|---|---|---|---|---|---|")
    for method, entry in report["methods"].items():
        for side, result in entry["best"].items():
            print(f"| {method} | {side} | {result['tokens_per_s']:.1f} | {result['peak_rss_mb']:.0f} | "
                  f"{result['train_loss']:.4f} | |")
        if "speedup" in entry:
            curves = entry["loss_curves"]
            print(f"| {method} | tuneforge / LLaMA-Factory | **{entry['speedup']:.2f}x** | | | same tokens: "
                  f"{entry['same_tokens']}; loss max abs diff over {curves['steps']} logged steps: "
                  f"{curves['max_abs_diff']:.4f} |")
        if "padding_free_gain" in entry:
            print(f"| {method} | padding-free / padded | {entry['padding_free_gain']:.2f}x | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
