"""Regenerate the LLaMA-Factory parity fixtures under tests/fixtures/parity/.

Run with the interpreter of a venv that has llamafactory==0.9.5 installed (not ours):

    /tmp/lfvenv/bin/python tools/make_lf_parity_fixtures.py [--demo-dir DIR]

What it does:
1. copies the first rows of LLaMA-Factory's demo datasets (alpaca, glaive tool calls, dpo, kto, c4) into
   tests/fixtures/parity/data/ with a matching dataset_info.json, so the tests never need the demo folder;
2. for each case below, runs LLaMA-Factory's own argument parser, template and `get_dataset` on that data
   with the committed tiny tokenizer (tests/fixtures/parity/tokenizer/), exactly as its `train` would;
3. writes what LLaMA-Factory produced (every integer column of every row) to
   tests/fixtures/parity/expected.json.gz. tests/data/test_lf_parity.py runs our pipeline on the same cases and
   compares token for token.

The tokenizer is loaded with AutoTokenizer directly (LLaMA-Factory's load_tokenizer also wants a model
config, which the tokenizer folder does not have); the arguments it passes are the same.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "parity"
TOKENIZER_DIR = FIXTURES / "tokenizer"
DATA_DIR = FIXTURES / "data"
# LLaMA-Factory's llama3 tool prompt contains today's date; both sides pin it to this one.
FIXED_DATE = "26 Jul 2024"

# dataset name -> number of demo rows copied into the fixture data folder.
DATASETS = {
    "alpaca_en_demo": 40,
    "glaive_toolcall_en_demo": 30,
    "dpo_en_demo": 20,
    "kto_en_demo": 24,
    "c4_demo": 12,
}

# Each case: LLaMA-Factory YAML keys (besides model/dataset_dir/output_dir). Short cutoffs make truncation
# happen on most rows.
CASES = {
    "sft_alpaca_qwen": dict(stage="sft", dataset="alpaca_en_demo", template="qwen", cutoff_len=128),
    "sft_alpaca_llama3_train_on_prompt": dict(stage="sft", dataset="alpaca_en_demo", template="llama3",
                                              cutoff_len=96, train_on_prompt=True),
    "sft_alpaca_default": dict(stage="sft", dataset="alpaca_en_demo", template="default", cutoff_len=200),
    "sft_alpaca_glm4_efficient_eos": dict(stage="sft", dataset="alpaca_en_demo", template="glm4", cutoff_len=128),
    "sft_glaive_qwen": dict(stage="sft", dataset="glaive_toolcall_en_demo", template="qwen", cutoff_len=256),
    "sft_glaive_llama3_mask_history": dict(stage="sft", dataset="glaive_toolcall_en_demo", template="llama3",
                                           cutoff_len=160, mask_history=True),
    "sft_glaive_llama3_tool_prompt": dict(stage="sft", dataset="glaive_toolcall_en_demo", template="llama3",
                                          cutoff_len=700),
    "sft_glaive_glm4_mask_history": dict(stage="sft", dataset="glaive_toolcall_en_demo", template="glm4",
                                         cutoff_len=200, mask_history=True),
    "sft_glaive_mistral": dict(stage="sft", dataset="glaive_toolcall_en_demo", template="mistral", cutoff_len=300),
    "sft_glaive_qwen3_mask_history": dict(stage="sft", dataset="glaive_toolcall_en_demo", template="qwen3",
                                          cutoff_len=220, mask_history=True),
    "sft_glaive_qwen3_nothink": dict(stage="sft", dataset="glaive_toolcall_en_demo", template="qwen3",
                                     cutoff_len=400, enable_thinking=False),
    "sft_alpaca_qwen_packing": dict(stage="sft", dataset="alpaca_en_demo", template="qwen", cutoff_len=256,
                                    packing=True),
    "sft_alpaca_llama3_neat_packing": dict(stage="sft", dataset="alpaca_en_demo", template="llama3",
                                           cutoff_len=300, neat_packing=True),
    "sft_alpaca_qwen_val_size": dict(stage="sft", dataset="alpaca_en_demo", template="qwen", cutoff_len=128,
                                     val_size=0.2),
    "sft_alpaca_chatml_max_samples": dict(stage="sft", dataset="alpaca_en_demo", template="chatml",
                                          cutoff_len=128, max_samples=7),
    "predict_alpaca_qwen_unsupervised": dict(stage="sft", dataset="alpaca_en_demo",
                                             eval_dataset="alpaca_en_demo", template="qwen", cutoff_len=96,
                                             do_train=False, do_predict=True, predict_with_generate=True),
    "rm_dpo_qwen": dict(stage="rm", dataset="dpo_en_demo", template="qwen", cutoff_len=128),
    "rm_dpo_llama3": dict(stage="rm", dataset="dpo_en_demo", template="llama3", cutoff_len=200),
    "dpo_dpo_glm4": dict(stage="dpo", dataset="dpo_en_demo", template="glm4", cutoff_len=150),
    "kto_kto_llama3": dict(stage="kto", dataset="kto_en_demo", template="llama3", cutoff_len=128),
    "kto_kto_qwen": dict(stage="kto", dataset="kto_en_demo", template="qwen", cutoff_len=200),
    # Batch boundaries decide pt blocks, packed rows and kto pairs: small batches on two workers.
    "pt_c4_qwen_small_batches_2_workers": dict(stage="pt", dataset="c4_demo", template="qwen", cutoff_len=50,
                                               preprocessing_batch_size=5, preprocessing_num_workers=2),
    "kto_kto_qwen_small_batches_2_workers": dict(stage="kto", dataset="kto_en_demo", template="qwen",
                                                 cutoff_len=150, preprocessing_batch_size=7,
                                                 preprocessing_num_workers=2),
    "sft_alpaca_qwen_packing_small_batches": dict(stage="sft", dataset="alpaca_en_demo", template="qwen",
                                                  cutoff_len=256, packing=True, preprocessing_batch_size=16),
    "pt_c4_default_packing": dict(stage="pt", dataset="c4_demo", template="default", cutoff_len=64),
    "pt_c4_qwen_no_packing": dict(stage="pt", dataset="c4_demo", template="qwen", cutoff_len=100, packing=False),
    "pt_c4_llama3_explicit_packing": dict(stage="pt", dataset="c4_demo", template="llama3", cutoff_len=80,
                                          packing=True),
}


def copy_demo_data(demo_dir: Path) -> None:
    info = json.loads((demo_dir / "dataset_info.json").read_text())
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    out_info = {}
    for name, n_rows in DATASETS.items():
        entry = info[name]
        out_info[name] = entry
        src = demo_dir / entry["file_name"]
        dst = DATA_DIR / entry["file_name"]
        if src.suffix == ".jsonl":
            lines = src.read_text(encoding="utf-8").splitlines()[:n_rows]
            dst.write_text("\n".join(lines) + "\n", encoding="utf-8")
        else:
            rows = json.loads(src.read_text(encoding="utf-8"))[:n_rows]
            dst.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    (DATA_DIR / "dataset_info.json").write_text(json.dumps(out_info, indent=2, ensure_ascii=False))


def _columns(dataset) -> dict:
    """Every column as a list over rows; all-ones attention masks are stored as the string "ones"."""
    out = {}
    for name, values in dataset.to_dict().items():
        if name.endswith("attention_mask") and all(all(v == 1 for v in row) for row in values):
            values = "ones"
        elif all(v is None for v in values):
            values = None  # media passthrough columns: all None here
        out[name] = values
    return out


def pin_llama3_date() -> None:
    import datetime as real_datetime

    import llamafactory.data.tool_utils as tool_utils

    class PinnedDatetime(real_datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls.strptime(FIXED_DATE, "%d %b %Y")

    tool_utils.datetime = PinnedDatetime


def run_case(name: str, keys: dict, out_root: Path) -> dict:
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from transformers import AutoTokenizer

    args = {
        "model_name_or_path": str(TOKENIZER_DIR),
        "dataset_dir": str(DATA_DIR),
        "finetuning_type": "lora",
        "do_train": True,
        "output_dir": str(out_root / name),
        "overwrite_cache": True,
        "report_to": "none",
        **keys,
    }
    model_args, data_args, training_args, finetuning_args, _ = get_train_args(args)
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.model_name_or_path, use_fast=model_args.use_fast_tokenizer,
        split_special_tokens=model_args.split_special_tokens, padding_side="right")
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    # LLaMA-Factory's DPO workflow asks for the pairwise ("rm") data.
    stage = "rm" if finetuning_args.stage == "dpo" else finetuning_args.stage
    module = get_dataset(template, model_args, data_args, training_args, stage, tokenizer=tokenizer)
    result = {"args": keys}
    if module.get("train_dataset") is not None:
        result["train"] = _columns(module["train_dataset"])
    eval_ds = module.get("eval_dataset")
    if eval_ds is not None:
        result["eval"] = ({k: _columns(v) for k, v in eval_ds.items()} if isinstance(eval_ds, dict)
                          else _columns(eval_ds))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-dir", default="/work/shared/data/llamafactory-demo")
    parser.add_argument("--only", nargs="*", help="case names to regenerate (default: all)")
    opts = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    if not (TOKENIZER_DIR / "tokenizer.json").exists():
        sys.exit(f"missing {TOKENIZER_DIR}: build it with tuneforge.testing.tiny_tokenizer first")
    copy_demo_data(Path(opts.demo_dir))

    pin_llama3_date()
    expected_path = FIXTURES / "expected.json.gz"
    expected = {"fixed_date": FIXED_DATE, "cases": {}}
    if opts.only and expected_path.exists():
        expected = json.loads(gzip.decompress(expected_path.read_bytes()))
    tmp = Path(tempfile.mkdtemp(prefix="lf_parity_"))
    try:
        for name, keys in CASES.items():
            if opts.only and name not in opts.only:
                continue
            print(f"== {name}", flush=True)
            expected["cases"][name] = run_case(name, keys, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(expected, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    # mtime=0 keeps the file byte-identical across regenerations with the same content.
    expected_path.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    print(f"wrote {expected_path} ({expected_path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
