"""Run every example YAML of a LLaMA-Factory checkout through tuneforge, as a new user would, and write the table.

    python tools/lf_compat_sweep.py                      # full: a 1-step run of each config (slow: minutes)
    python tools/lf_compat_sweep.py --mode plan          # cheap: load + validate + pre-weights checks only
    python tools/lf_compat_sweep.py --examples DIR --out docs/lf_compat_sweep.md

Each config runs unchanged except:
  - model_name_or_path: a tiny random model of the template's family (tuneforge.testing: Qwen2 for qwen*
    templates, Llama otherwise), built once in the scratch folder; LLaMA Pro examples (use_llama_pro) get a
    tiny Llama of 2 x freeze_trainable_layers layers, the shape LLaMA-Factory's llama_pro.py expansion gives
    (its layer count is a multiple of num_expand, which the example passes as freeze_trainable_layers);
  - dataset_dir: LLaMA-Factory's demo data (../shared/data/llamafactory-demo);
  - output_dir / export_dir / adapter paths: the YAML's own relative paths, resolved in a scratch folder laid
    out like LLaMA-Factory's repository (examples/ linked in), so merge and inference configs find what the
    training configs wrote, in LLaMA-Factory's README order (train, then merge, then inference);
  - dataset: only where the example names a dataset that LLaMA-Factory's own demo data does not define (the
    ASFT examples' `med` and `math`, which LLaMA-Factory refuses the same way), `alpaca_en_demo` stands in, and
    the table says so;
  - the budget: max_steps 1, max_samples 8, report_to none (no account-bound loggers), max_new_tokens 8, and
    no worker processes (preprocessing_num_workers 1, dataloader_num_workers 0: 16 + 4 workers per config
    cost minutes on a 2-core machine and change nothing that is checked).
The command is the one LLaMA-Factory's README gives for the folder: `train`, `export` (merge_lora/) or `chat`
(inference/, one message).

Results: ok / refused (hardware): this machine lacks CUDA, an FP8-capable GPU or an NPU / refused (other) /
traceback. Vision-language configs (a template with a media plugin, or image/video keys) belong to the
vision-language issue and are listed, not run; so are the folders named in NOT_SWEPT.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TUNEFORGE_SHARED", ROOT.parent / "shared"))
DEFAULT_EXAMPLES = SHARED / "examples" / "llamafactory"
DEMO_DATA = SHARED / "data" / "llamafactory-demo"

# Folders / files that are not run, with the reason printed in the table.
NOT_SWEPT = {
    "accelerate": "accelerate launcher configs (for `accelerate launch --config_file`), not run configs",
    "ktransformers": "KTransformers (a CUDA-only MoE kernel backend) and its launcher configs",
    "megatron": "Megatron-Core training (use_mca), a separate engine",
    "megatron_bridge": "Megatron-Bridge training, a separate engine",
    "v1": "LLaMA-Factory v1's nested config format, a different file format",
    "extras/multi_tokens/tokens_cfg.yaml": "a new_special_tokens_config description file, not a run config",
}
# README order: what later folders read (adapters, merged models) is written by earlier ones.
ORDER = ["train_lora", "train_qlora", "train_full", "extras", "ascend", "merge_lora", "inference"]
VL_KEYS = ("image_max_pixels", "video_max_pixels", "image_min_pixels", "freeze_vision_tower", "media_dir")
BUDGET = {"max_steps": 1, "max_samples": 8, "report_to": "none", "preprocessing_num_workers": 1,
          "dataloader_num_workers": 0}
HARDWARE = re.compile(r"CUDA|GPU|compute capability|NPU|Ascend|FlashAttention|flash[-_]attn|lacks the hardware",
                      re.IGNORECASE)


@dataclass
class Result:
    config: str
    command: str
    outcome: str  # ok | refused (hardware) | refused (other) | traceback | vision-language | not swept
    detail: str
    seconds: float = 0.0


def example_files(examples: Path) -> list[Path]:
    files = sorted(examples.rglob("*.yaml"), key=lambda path: _order_key(path.relative_to(examples)))
    return files


def _order_key(relative: Path) -> tuple[int, str]:
    top = relative.parts[0]
    return (ORDER.index(top) if top in ORDER else len(ORDER), relative.as_posix())


def not_swept_reason(relative: str) -> str | None:
    for prefix, reason in NOT_SWEPT.items():
        if relative == prefix or relative.startswith(prefix + "/"):
            return reason
    return None


def command_for(relative: str) -> str:
    top = relative.split("/")[0]
    return {"merge_lora": "export", "inference": "chat"}.get(top, "train")


def is_vision_language(values: dict[str, Any]) -> bool:
    from tuneforge.data.templates.registry import TEMPLATES

    name = str(values.get("template"))
    template = TEMPLATES.get(name)
    if template is not None and template.media.get("plugin") not in (None, "base"):
        return True
    if template is None and re.search(r"vl$|_vl_", name):  # a vision-language template we lack (moss_vl)
        return True
    return any(key in values for key in VL_KEYS)


def tiny_arch(values: dict[str, Any]) -> str:
    return "qwen2" if str(values.get("template", "")).startswith("qwen") else "llama"


def prepare_scratch(scratch: Path, examples: Path, models: dict[str, Path] | None = None) -> dict[str, Path]:
    """The scratch folder: examples/ linked in (YAMLs name examples/deepspeed/...), one tiny model per family
    (`models`: already built ones, by arch)."""
    from tuneforge.testing.tiny_model import build_tiny_model

    scratch.mkdir(parents=True, exist_ok=True)
    link = scratch / "examples"
    if link.is_symlink():
        link.unlink()  # a previous sweep may have linked another checkout
    if not link.exists():
        link.symlink_to(examples.resolve(), target_is_directory=True)
    if models is not None:
        return models
    models = {}
    for arch in ("llama", "qwen2"):
        folder = scratch / "tiny_models" / arch
        if not (folder / "config.json").is_file():
            build_tiny_model(folder, arch=arch)
        models[arch] = folder
    return models


STAND_IN_DATASET = "alpaca_en_demo"


def missing_datasets(values: dict[str, Any]) -> list[str]:
    """The example's datasets that LLaMA-Factory's demo data does not define (its dataset_info.json)."""
    import json

    defined = json.loads((DEMO_DATA / "dataset_info.json").read_text(encoding="utf-8"))
    names = [name.strip() for name in str(values.get("dataset") or "").split(",") if name.strip()]
    return [name for name in names if name not in defined and not (DEMO_DATA / name).exists()]


def stand_in_model(values: dict[str, Any], models: dict[str, Path], scratch: Path) -> Path:
    if not values.get("use_llama_pro"):
        return models[tiny_arch(values)]
    from tuneforge.testing.tiny_model import build_tiny_model

    layers = 2 * int(values.get("freeze_trainable_layers", 2))
    folder = scratch / "tiny_models" / f"llama_pro_{layers}_layers"
    if not (folder / "config.json").is_file():
        build_tiny_model(folder, arch="llama", layers=layers)
    return folder


def overrides_for(values: dict[str, Any], command: str, model_dir: Path) -> dict[str, Any]:
    overrides: dict[str, Any] = {"model_name_or_path": str(model_dir), "dataset_dir": str(DEMO_DATA)}
    if missing_datasets(values):
        overrides["dataset"] = STAND_IN_DATASET
    if command == "train":
        overrides.update(BUDGET)
    if command == "chat" or values.get("do_predict"):
        overrides["max_new_tokens"] = 8
    return overrides


def classify_error(text: str) -> str:
    return "refused (hardware)" if HARDWARE.search(text) else "refused (other)"


def plan_one(path: Path, command: str, overrides: dict[str, Any]) -> None:
    """The cheap mode: what `tuneforge <command>` checks before any data or weights load."""
    from tuneforge.config import load_config
    from tuneforge.validate import validate_config

    cfg = load_config(str(path), [f"{key}={value}" for key, value in overrides.items()])
    validate_config(cfg)
    if command == "export":
        from tuneforge.export.run import check_export_config

        check_export_config(cfg)
    elif command == "train":
        from tuneforge.errors import ConfigError
        from tuneforge.train import RECIPES
        from tuneforge.train.trainer import prepare_run

        if cfg.method.stage not in RECIPES:
            raise ConfigError(f"stage: {cfg.method.stage} training is not implemented yet")
        prepare_run(cfg)


def run_one(path: Path, command: str, overrides: dict[str, Any], scratch: Path, timeout: int) -> tuple[int, str]:
    argv = [sys.executable, "-m", "tuneforge", command, str(path), *[f"{k}={v}" for k, v in overrides.items()]]
    if command == "chat":
        argv += ["--message", "Hello"]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    try:
        done = subprocess.run(argv, cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout} s"
    return done.returncode, done.stderr + done.stdout


def sweep(examples: Path, mode: str, scratch: Path, timeout: int = 900, only: str | None = None,
          progress: bool = False, models: dict[str, Path] | None = None,
          on_result: Callable[[list[Result]], None] | None = None) -> list[Result]:
    import yaml

    if not examples.is_dir():
        raise SystemExit(f"--examples: {examples} is not a folder; give a LLaMA-Factory checkout's examples/ "
                         f"(or set TUNEFORGE_SHARED to the folder holding examples/llamafactory)")
    if not DEMO_DATA.is_dir():
        raise SystemExit(f"LLaMA-Factory's demo data is not at {DEMO_DATA}; set TUNEFORGE_SHARED to the folder "
                         f"holding data/llamafactory-demo")
    models = prepare_scratch(scratch, examples, models)
    results = []
    for path in example_files(examples):
        relative = path.relative_to(examples).as_posix()
        if only and not any(part and part in relative for part in only.split(",")):
            continue
        command = command_for(relative)
        reason = not_swept_reason(relative)
        if reason is not None:
            results.append(Result(relative, command, "not swept", reason))
            continue
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if is_vision_language(values):
            results.append(Result(relative, command, "vision-language",
                                  f"template {values.get('template')}: the vision-language issue"))
            continue
        overrides = overrides_for(values, command, stand_in_model(values, models, scratch))
        start = time.perf_counter()
        result = (_plan_result if mode == "plan" else _run_result)(path, relative, command, overrides, scratch,
                                                                    timeout)
        result.seconds = time.perf_counter() - start
        if "dataset" in overrides:
            result.detail = (f"dataset {','.join(missing_datasets(values))} (not in LLaMA-Factory's demo data) -> "
                             f"{STAND_IN_DATASET}: {result.detail}")
        if progress:
            print(f"{result.outcome:20} {result.seconds:6.1f}s {relative}  {result.detail[:150]}", flush=True)
        results.append(result)
        if on_result is not None:
            on_result(results)  # the table so far: a long sweep that is stopped keeps what it measured
    if on_result is not None:
        on_result(results)  # with the rows listed but not run after the last run config
    return results


def _plan_result(path: Path, relative: str, command: str, overrides: dict[str, Any], scratch: Path,
                 timeout: int) -> Result:
    import traceback

    from tuneforge.errors import UserError

    cwd = os.getcwd()
    os.chdir(scratch)
    try:
        plan_one(path, command, overrides)
    except UserError as error:
        text = _without_path(str(error), path)
        return Result(relative, command, classify_error(text), _first_line(text))
    except Exception:  # noqa: BLE001 - a traceback is what the sweep reports
        return Result(relative, command, "traceback", _last_line(traceback.format_exc()))
    finally:
        os.chdir(cwd)
    return Result(relative, command, "ok", "validated and planned (no weights loaded)")


def _run_result(path: Path, relative: str, command: str, overrides: dict[str, Any], scratch: Path,
                timeout: int) -> Result:
    code, output = run_one(path, command, overrides, scratch, timeout)
    if code == 0:
        return Result(relative, command, "ok", _summary(output, command))
    if "Traceback (most recent call last)" in output or code == 124:
        return Result(relative, command, "traceback", _last_line(output))
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    text = "\n".join(output.splitlines()[output.splitlines().index(errors[-1]):]) if errors else output
    text = _without_path(text.removeprefix("error: "), path)
    return Result(relative, command, classify_error(text), _first_line(text))


def _without_path(text: str, path: Path) -> str:
    """Errors start with the config file's path; the table names the config already (and a path such as
    ascend/... must not read as a hardware reason)."""
    return text.replace(f"{path}: ", "").replace(str(path), "<config>")


def _summary(output: str, command: str) -> str:
    if command == "train":
        losses = re.findall(r"'loss': '?([0-9.]+)", output) or re.findall(r"train_loss\W+([0-9.]+)", output)
        return f"1 step, loss {losses[-1]}" if losses else "1 step"
    return {"export": "merged and exported", "chat": "answered one message"}[command]


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def earlier_results(table: Path) -> list[Result]:
    """The rows of a table this script wrote before (to merge a sweep done in parts)."""
    rows = []
    for line in table.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 5 and cells[0].startswith("`"):
            rows.append(Result(cells[0].strip("`"), cells[1], cells[2], cells[4].replace("\\|", "|"),
                               float(cells[3]) if cells[3] else 0.0))
    return rows


def merged(earlier: list[Result], results: list[Result], examples: Path) -> list[Result]:
    """`results` replace the earlier rows of the same configs; the order is the sweep's."""
    by_config = {result.config: result for result in earlier}
    by_config.update({result.config: result for result in results})
    order = {path.relative_to(examples).as_posix(): index for index, path in enumerate(example_files(examples))}
    return sorted(by_config.values(), key=lambda result: order.get(result.config, len(order)))


def write_table(results: list[Result], out: Path, mode: str, examples: Path, only: str | None = None) -> None:
    counts: dict[str, int] = {}
    for result in results:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    source = examples / "SOURCE.txt"
    lines = [
        "# LLaMA-Factory example configs through tuneforge",
        "",
        "Generated by `tools/lf_compat_sweep.py --mode " + mode + (f" --only {only}" if only else "")
        + "`; do not edit by hand. Each config ran "
        "unchanged except the model (a tiny random model of the template's family), `dataset_dir` (LLaMA-Factory's "
        "demo data), the scratch folder its relative `output_dir` resolves in, and a 1-step budget (max_steps 1, "
        "max_samples 8, report_to none, no worker processes). See the script's docstring.",
        "",
        f"Examples: `{source.read_text().strip() if source.is_file() else examples}`",
        "",
        "Summary: " + ", ".join(f"{outcome}: {count}" for outcome, count in sorted(counts.items())),
        "",
        "| config | command | result | seconds | detail |",
        "|---|---|---|---|---|",
    ]
    for result in results:
        detail = result.detail.replace("|", "\\|")[:300]
        seconds = f"{result.seconds:.1f}" if result.seconds else ""
        lines.append(f"| `{result.config}` | {result.command} | {result.outcome} | {seconds} | {detail} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=Path, default=DEFAULT_EXAMPLES)
    parser.add_argument("--mode", choices=("plan", "run"), default="run")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "lf_compat_sweep.md")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/tuneforge_lf_sweep"))
    parser.add_argument("--timeout", type=int, default=900, help="seconds per config (run mode)")
    parser.add_argument("--only", help="run only configs whose path contains one of these comma-separated texts")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of --out for configs this run does not sweep (a sweep done in parts)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    earlier = earlier_results(args.out) if args.merge and args.out.is_file() else []
    label = f"{args.mode} (in parts)" if earlier else args.mode

    def write(results: list[Result]) -> None:
        write_table(merged(earlier, results, args.examples), args.out, label, args.examples,
                    None if earlier else args.only)

    sweep(args.examples, args.mode, args.scratch, args.timeout, args.only, progress=True, on_result=write)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
