"""`tuneforge export` of a vision-language model with a LoRA adapter merged: the export holds the merged weights
and every processor file of the original (image, video and processor configs, chat template), so it loads
with AutoImageProcessor / AutoModelForImageTextToText like the original."""

import json

import torch

from tuneforge.config import make_config
from tuneforge.export import run_export
from tuneforge.testing.tiny_vl_model import build_tiny_qwen2_vl

# What a real Qwen2-VL directory holds beside preprocessor_config.json (the tiny builder writes only that).
EXTRA_FILES = {"video_preprocessor_config.json": {"video_processor_type": "Qwen2VLVideoProcessor", "patch_size": 14,
                                                  "merge_size": 2, "temporal_patch_size": 2},
               "processor_config.json": {"processor_class": "Qwen2VLProcessor"}}


def test_merged_lora_export_keeps_every_processor_file(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoImageProcessor, AutoModelForImageTextToText

    base_dir, adapter_dir, out = tmp_path / "vl", tmp_path / "adapter", tmp_path / "out"
    build_tiny_qwen2_vl(base_dir)
    for name, content in EXTRA_FILES.items():
        (base_dir / name).write_text(json.dumps(content))
    model = AutoModelForImageTextToText.from_pretrained(base_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=r".*language_model.*\.q_proj"))
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)  # a non-zero adapter, so merging changes the weights
    peft_model.save_pretrained(adapter_dir)
    ids = torch.tensor([[5, 17, 42, 99]])
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits

    run_export(make_config({"model_name_or_path": str(base_dir), "adapter_name_or_path": str(adapter_dir),
                            "finetuning_type": "lora", "template": "qwen2_vl", "export_dir": str(out)}))
    for name in ("preprocessor_config.json", *EXTRA_FILES):
        assert (out / name).read_bytes() == (base_dir / name).read_bytes(), name
    processor = AutoImageProcessor.from_pretrained(out)
    assert (processor.patch_size, processor.merge_size) == (14, 2)
    exported = AutoModelForImageTextToText.from_pretrained(out)
    assert not any("lora" in name for name in exported.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(exported(input_ids=ids).logits, expected, atol=1e-4, rtol=1e-4)
    original = AutoModelForImageTextToText.from_pretrained(base_dir)
    with torch.no_grad():
        assert not torch.allclose(original(input_ids=ids).logits, expected, atol=1e-3)
