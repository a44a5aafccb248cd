"""Shared by the image-family fixture scripts (llava.py, llava_next.py, pixtral.py, gemma3.py): tokenize
LLaMA-Factory's `mllm_demo` with LLaMA-Factory 0.9.5's own code on a tiny model of the family, and write
what it produced to tests/fixtures/mm/<family>_image.json.

Run a family script with LLaMA-Factory's interpreter (it builds the tiny model with ours first):

    /work/lfvenv/bin/python tools/lf_mm_fixtures/llava.py [--demo-dir DIR]

Per case, the fixture holds every row's input_ids and labels (LLaMA-Factory's get_dataset, as its `train`
would build them) and the media inputs the model receives (LLaMA-Factory's mm_plugin.get_mm_inputs: for one
row at a time and for all rows as one batch), summarized by tuneforge.testing.media_summary.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "mm"
OUR_PYTHON = os.environ.get("TUNEFORGE_PYTHON", "/work/main/.venv/bin/python")
sys.path.insert(0, str(ROOT / "src"))  # tuneforge.testing.media_summary (stdlib + numpy + torch only)


def build_model(family: str, model_dir: Path) -> None:
    """Build the tiny model with our stack (transformers 5); LLaMA-Factory only reads its processor files."""
    code = (f"from tuneforge.testing.tiny_vl_{family} import build_tiny_{family}; "
            f"build_tiny_{family}({str(model_dir)!r})")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    subprocess.run([OUR_PYTHON, "-c", code], check=True, env=env)


def run_case(model_dir: Path, demo_dir: Path, keys: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    from tuneforge.testing.media_summary import summarize_inputs

    args = {"model_name_or_path": str(model_dir), "dataset": "mllm_demo", "dataset_dir": str(demo_dir),
            "stage": "sft", "do_train": True, "finetuning_type": "lora", "output_dir": str(out_dir),
            "overwrite_cache": True, "report_to": "none", **keys}
    model_args, data_args, training_args, _, _ = get_train_args(args)
    module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(module["tokenizer"], data_args)
    dataset = get_dataset(template, model_args, data_args, training_args, "sft", **module)["train_dataset"]
    plugin, processor = template.mm_plugin, module["processor"]

    def media_inputs(rows: list[dict]) -> dict[str, Any]:
        images = [image for row in rows for image in row["images"]]
        inputs = plugin.get_mm_inputs(images, [], [], [len(row["images"]) for row in rows], [0] * len(rows),
                                      [0] * len(rows), [row["input_ids"] for row in rows], processor)
        return summarize_inputs(inputs)

    rows = list(dataset)
    return {"args": keys,
            "rows": [{"input_ids": row["input_ids"], "labels": row["labels"],
                      "images": [Path(image).name for image in row["images"]], "media": media_inputs([row])}
                     for row in rows],
            "batch": media_inputs(rows)}


def main(family: str, cases: dict[str, dict[str, Any]]) -> int:
    parser = argparse.ArgumentParser(description=f"LLaMA-Factory parity fixtures for {family} images")
    parser.add_argument("--demo-dir", default="/work/shared/data/llamafactory-demo")
    opts = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import llamafactory
    import transformers

    tmp = Path(tempfile.mkdtemp(prefix=f"lf_mm_{family}_"))
    try:
        build_model(family, tmp / "model")
        fixture = {"family": family, "llamafactory": llamafactory.__version__,
                   "transformers": transformers.__version__, "dataset": "mllm_demo",
                   "cases": {name: run_case(tmp / "model", Path(opts.demo_dir), keys, tmp / name)
                             for name, keys in cases.items()}}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    path = FIXTURES / f"{family}_image.json"
    path.write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
    return 0
