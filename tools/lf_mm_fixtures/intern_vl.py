"""Regenerate tests/fixtures/mm/intern_vl_image.json: LLaMA-Factory 0.9.5's tokenized `mllm_demo` for InternVL.

Run in two steps (the tiny model is built with our transformers, LLaMA-Factory runs in its own venv):

    .venv/bin/python -m tuneforge.testing.tiny_vl_intern /tmp/tiny_intern_vl
    /work/lfvenv/bin/python tools/lf_mm_fixtures/intern_vl.py --model-dir /tmp/tiny_intern_vl

For each case, LLaMA-Factory's own argument parser, `load_tokenizer`, template and `get_dataset` tokenize
mllm_demo exactly as its `train` would; its InternVL plugin's `get_mm_inputs` then gives the model inputs of each
row alone and of all rows as one batch. The fixture holds input_ids, labels and, for every tensor that reaches the
model, its shape, dtype and checksums (sum, sum of absolute values).

One patch, because LLaMA-Factory cannot run InternVL on this machine as it is: transformers' AutoProcessor for
InternVL also builds the video processor, which needs torchvision (absent here), so LLaMA-Factory's
load_tokenizer gets no processor ("Processor was not found"). The script gives it InternVLProcessor without the
video processor, with the slow image processor (LLaMA-Factory's choice when torchvision is missing). Nothing
that counts tokens or makes pixels is changed: image_seq_length and the image processor come from the model
directory's processor_config.json / preprocessor_config.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "mm"

CASES = {
    "default": dict(template="intern_vl", cutoff_len=1024),
    "crop_to_patches": dict(template="intern_vl", cutoff_len=1024, crop_to_patches=True),
    "crop_small_images": dict(template="intern_vl", cutoff_len=1024, crop_to_patches=True,
                              image_max_pixels=100 * 100),
}


def tensor_summary(value) -> dict:
    """Shape, dtype and checksums of a tensor (or a list of ints) that reaches the model."""
    import torch

    tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    as_float = tensor.double()
    return {"shape": list(tensor.shape), "dtype": str(tensor.dtype).replace("torch.", ""),
            "sum": float(as_float.sum()), "abs_sum": float(as_float.abs().sum())}


def summaries(mm_inputs: dict) -> dict:
    return {name: tensor_summary(value) for name, value in sorted(mm_inputs.items())}


def patch_internvl_processor() -> None:
    """Make LLaMA-Factory's load_tokenizer build InternVLProcessor without its (torchvision) video processor."""
    import llamafactory.model.loader as lf_loader
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer
    from transformers.models.internvl.processing_internvl import InternVLProcessor
    from transformers.processing_utils import ProcessorMixin

    class InternVLImageOnlyProcessor(InternVLProcessor):
        attributes = ["image_processor", "tokenizer"]

        def __init__(self, image_processor, tokenizer, image_seq_length):
            ProcessorMixin.__init__(self, image_processor, tokenizer)
            self.image_seq_length = image_seq_length
            self.image_token = tokenizer.context_image_token
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)

    class PatchedAutoProcessor:
        @staticmethod
        def from_pretrained(path, **kwargs):
            config = json.loads((Path(path) / "config.json").read_text())
            if config.get("model_type") != "internvl":
                return AutoProcessor.from_pretrained(path, **kwargs)
            processor_config = json.loads((Path(path) / "processor_config.json").read_text())
            return InternVLImageOnlyProcessor(AutoImageProcessor.from_pretrained(path, use_fast=False),
                                              AutoTokenizer.from_pretrained(path),
                                              processor_config["image_seq_length"])

    lf_loader.AutoProcessor = PatchedAutoProcessor


def run_case(model_dir: str, demo_dir: str, keys: dict, out_dir: Path) -> dict:
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    args = {"model_name_or_path": model_dir, "dataset": "mllm_demo", "dataset_dir": demo_dir, "stage": "sft",
            "finetuning_type": "lora", "do_train": True, "output_dir": str(out_dir), "overwrite_cache": True,
            "report_to": "none", **keys}
    model_args, data_args, training_args, _, _ = get_train_args(args)
    tokenizer_module = load_tokenizer(model_args)
    assert tokenizer_module["processor"] is not None, "LLaMA-Factory got no processor"
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    dataset = get_dataset(template, model_args, data_args, training_args, "sft", **tokenizer_module)["train_dataset"]
    processor = tokenizer_module["processor"]
    rows, per_row = [], []
    for row in dataset:
        images = row["images"] or []
        rows.append({"input_ids": row["input_ids"], "labels": row["labels"],
                     "images": [os.path.basename(path) for path in images]})
        per_row.append(summaries(template.mm_plugin.get_mm_inputs(
            images, [], [], [len(images)], [0], [0], [row["input_ids"]], processor)))
    all_images = [image for row in dataset for image in (row["images"] or [])]
    batch = template.mm_plugin.get_mm_inputs(
        all_images, [], [], [len(row["images"] or []) for row in dataset], [0] * len(dataset), [0] * len(dataset),
        [row["input_ids"] for row in dataset], processor)
    result = {"args": keys, "rows": rows, "mm_inputs": per_row, "batch_mm_inputs": summaries(batch)}
    if "cross_attention_mask" in batch:  # mllama: also the mask on real (unpadded) positions only
        mask = batch["cross_attention_mask"].clone()
        for index, row in enumerate(dataset):
            mask[index, len(row["input_ids"]):] = 0
        result["batch_cross_attention_mask_real"] = tensor_summary(mask)
    return result


def main(family: str, cases: dict, patch=None) -> None:
    parser = argparse.ArgumentParser(description=f"LLaMA-Factory fixtures for {family}")
    parser.add_argument("--model-dir", required=True, help="the tiny model directory built by tuneforge.testing")
    parser.add_argument("--demo-dir", default=str(FIXTURES / "mllm_demo"))
    opts = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    if patch is not None:
        patch()
    import llamafactory

    tmp = Path(tempfile.mkdtemp(prefix=f"lf_mm_{family}_"))
    try:
        result = {"llamafactory": llamafactory.__version__, "dataset": "mllm_demo",
                  "cases": {name: run_case(opts.model_dir, opts.demo_dir, keys, tmp / name)
                            for name, keys in cases.items()}}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    path = FIXTURES / f"{family}_image.json"
    path.write_text(json.dumps(result, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main("intern_vl", CASES, patch_internvl_processor)
