"""Make the Qwen-VL token-parity fixtures with LLaMA-Factory 0.9.5's own code (tests/fixtures/mm/qwen*_*.json).

Run with LLaMA-Factory's venv and a torchvision its Qwen-VL video processors can import:

    /work/lfvenv/bin/python tools/lf_mm_fixtures/qwen.py --torchvision-dir /tmp/lf_tv

1. builds tiny Qwen2-VL / Qwen2.5-VL / Qwen3-VL models with tuneforge's builders (tuneforge.testing, run in
   tuneforge's venv, --tf-python);
2. for each family and each of mllm_demo (images) and mllm_video_demo (videos), runs LF's load_tokenizer
   (AutoProcessor), template and get_dataset, and LF's mm plugin get_mm_inputs per row;
3. writes input_ids, labels and the processor outputs (shapes, sums, a few values, grid sizes,
   second_per_grid_ts) to tests/fixtures/mm/<family>_<medium>.json.

torchvision: LLaMA-Factory's venv has none, and AutoProcessor of a Qwen-VL model needs its video processor,
which imports torchvision.transforms. --torchvision-dir is a folder holding PyPI's torchvision wheel installed
with `pip install --no-deps --target DIR torchvision==0.28.0` (nothing goes into the venv). That wheel is a
CUDA build whose compiled ops cannot register next to the CPU torch; only its pure-Python transforms are used
here, so its `_meta_registrations` module (the one that registers those ops) is replaced by an empty module.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / "tests" / "fixtures" / "mm"
FAMILIES = {  # fixture name -> (builder in tuneforge.testing, LF template)
    "qwen2_vl": ("tiny_vl_model:build_tiny_qwen2_vl", "qwen2_vl"),
    "qwen2_5_vl": ("tiny_vl_qwen:build_tiny_qwen2_5_vl", "qwen2_vl"),
    "qwen3_vl": ("tiny_vl_qwen:build_tiny_qwen3_vl", "qwen3_vl_nothink"),
}
MEDIA = {"image": "mllm_demo", "video": "mllm_video_demo"}
# Media keys set for every case (non-default video limits keep the tiny tensors small and test the keys).
KEYS = {"video_fps": 1.0, "video_maxlen": 6, "video_max_pixels": 128 * 128, "image_max_pixels": 256 * 256}


def build_models(tf_python: str, model_root: Path) -> None:
    code = ["import sys; sys.path.insert(0, %r)" % str(ROOT / "src")]
    for name, (builder, _) in FAMILIES.items():
        module, function = builder.split(":")
        code.append(f"from tuneforge.testing.{module} import {function}; {function}({str(model_root / name)!r})")
    subprocess.run([tf_python, "-c", "\n".join(code)], check=True)
    for name in FAMILIES:  # transformers 5 names its tokenizer class TokenizersBackend; 4.57 reads the same file
        path = model_root / name / "tokenizer_config.json"
        config = json.loads(path.read_text())
        config["tokenizer_class"] = "Qwen2TokenizerFast"
        path.write_text(json.dumps(config))


def shim_torchvision(folder: str) -> None:
    sys.path.insert(0, folder)
    sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")


def summary(tensor) -> dict:
    import torch

    values = tensor.to(torch.float64)
    return {"shape": list(tensor.shape), "sum": float(values.sum()), "abs_sum": float(values.abs().sum()),
            "first": [round(float(v), 6) for v in values.flatten()[:8]]}


def run_case(family: str, medium: str, model_dir: Path, demo_dir: str, out_root: Path) -> dict:
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    keys = {"template": FAMILIES[family][1], "dataset": MEDIA[medium], "cutoff_len": 4096, **KEYS}
    args = {"model_name_or_path": str(model_dir), "dataset_dir": demo_dir, "finetuning_type": "lora",
            "do_train": True, "output_dir": str(out_root / f"{family}_{medium}"), "overwrite_cache": True,
            "report_to": "none", "preprocessing_num_workers": None, **keys}
    model_args, data_args, training_args, _, _ = get_train_args(args)
    loaded = load_tokenizer(model_args)
    tokenizer, processor = loaded["tokenizer"], loaded["processor"]
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    dataset = get_dataset(template, model_args, data_args, training_args, "sft", **loaded)["train_dataset"]
    rows = []
    for row in dataset:
        images, videos = row["images"] or [], row["videos"] or []
        inputs = template.mm_plugin.get_mm_inputs(images, videos, [], [len(images)], [len(videos)], [0],
                                                  [row["input_ids"]], processor)
        outputs = {}
        for key, value in inputs.items():
            if key in ("pixel_values", "pixel_values_videos"):
                outputs[key] = summary(value)
            elif key in ("image_grid_thw", "video_grid_thw"):
                outputs[key] = value.tolist()
            elif key == "second_per_grid_ts":
                outputs[key] = [float(v) for v in value]
        rows.append({"input_ids": row["input_ids"], "labels": row["labels"], "images": images, "videos": videos,
                     "processor": outputs})
    return {"args": keys, "image_processor": type(processor.image_processor).__name__,
            "video_processor": type(processor.video_processor).__name__, "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-dir", default="/work/shared/data/llamafactory-demo")
    parser.add_argument("--torchvision-dir", required=True)
    parser.add_argument("--tf-python", default="/work/main/.venv/bin/python")
    opts = parser.parse_args()
    shim_torchvision(opts.torchvision_dir)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model_root = Path(tmp) / "models"
        build_models(opts.tf_python, model_root)
        for family in FAMILIES:
            for medium in MEDIA:
                result = run_case(family, medium, model_root / family, opts.demo_dir, Path(tmp) / "out")
                path = OUT_DIR / f"{family}_{medium}.json"
                path.write_text(json.dumps(result, indent=1))
                print(f"wrote {path.relative_to(ROOT)} ({len(result['rows'])} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
