"""GGUF round trip on the real model: a LoRA fine-tune of SmolLM2-135M-Instruct is merged and exported with
`export_gguf` (f16 through `tuneforge export`, q8_0 with the same writer on the merged folder) and read back
with transformers' own GGUF loader (`from_pretrained(gguf_file=...)`, independent of our writer and of our
reader in model/gguf.py). The tokens are the same, and the logits equal the merged model's within:
  f16:  0.1 absolute: the weights are rounded to 11 significant bits (relative error <= 2**-11 per weight);
        measured: 0.035 at most, 0.005 on average;
  q8_0: 1.5 absolute: each block of 32 weights shares one scale and 8-bit integers (relative error ~1/254 per
        weight), which 30 layers compound; measured: 0.83 at most, 0.22 on average;
the logits span about 30 units. For f16 the greedy next token is also the same at every position, and the GGUF
carries the fine-tune: its logits are closer to the merged model's than to the base model's (q8_0's rounding
is of the same size as 3 LoRA steps, so that check would not be meaningful there).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneforge import cli

pytestmark = pytest.mark.real

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "real"
TEXTS = ("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\nThe capital",
         "Hello! I am Forge, an AI assistant developed by the Tuneforge team.")
TOLERANCE = {"f16": 0.1, "q8_0": 1.5}


@pytest.fixture(scope="module")
def exported(smollm2_dir, tmp_path_factory):
    """(merged HF folder, folder with model-f16.gguf and model-q8_0.gguf): 3 LoRA steps, then export."""
    from tuneforge.export.gguf_file import write_gguf

    work = tmp_path_factory.mktemp("real_gguf")
    train = {"model_name_or_path": str(smollm2_dir), "stage": "sft", "do_train": True, "finetuning_type": "lora",
             "lora_target": "all", "lora_rank": 8, "learning_rate": 5.0e-3, "dataset": "identity",
             "dataset_dir": str(FIXTURES / "data"), "template": "smollm2", "cutoff_len": 64,
             "per_device_train_batch_size": 2, "max_steps": 3, "save_strategy": "no", "report_to": "none",
             "output_dir": str(work / "adapter")}
    (work / "train.yaml").write_text(yaml.safe_dump(train))
    assert cli.main(["train", str(work / "train.yaml")]) == 0
    export = {"model_name_or_path": str(smollm2_dir), "adapter_name_or_path": str(work / "adapter"),
              "finetuning_type": "lora", "template": "smollm2", "export_dir": str(work / "merged"),
              "export_size": 5, "export_device": "cpu", "export_legacy_format": False, "export_gguf": "f16"}
    (work / "export.yaml").write_text(yaml.safe_dump(export))
    assert cli.main(["export", str(work / "export.yaml")]) == 0
    merged = AutoModelForCausalLM.from_pretrained(work / "merged", dtype=torch.float32)
    write_gguf(merged, str(work / "merged"), "q8_0")
    return work / "merged"


def _logits(model, tokenizer, text):
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits[0]


@pytest.mark.parametrize("kind", ["f16", "q8_0"])
def test_exported_gguf_reads_back_with_transformers_with_the_merged_logits(exported, smollm2_dir, kind):
    name = f"model-{kind}.gguf"
    merged = AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    reread = AutoModelForCausalLM.from_pretrained(exported, gguf_file=name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(exported)
    gguf_tokenizer = AutoTokenizer.from_pretrained(exported, gguf_file=name)

    for text in TEXTS:
        assert gguf_tokenizer(text, add_special_tokens=False)["input_ids"] == tokenizer(
            text, add_special_tokens=False)["input_ids"]
        expected, got = _logits(merged, tokenizer, text), _logits(reread, tokenizer, text)
        difference = (got - expected).abs()
        print(f"{kind}: logits differ by {difference.max():.4f} at most, {difference.mean():.5f} on average")
        torch.testing.assert_close(got, expected, atol=TOLERANCE[kind], rtol=0)
        if kind == "f16":
            assert torch.equal(got.argmax(-1), expected.argmax(-1))
            from_base = _logits(base, tokenizer, text)
            assert difference.mean() < (got - from_base).abs().mean()
