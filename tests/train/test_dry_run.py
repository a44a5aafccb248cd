"""`tuneforge train --dry-run`: the plan and the memory estimate from config.json, without loading anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tuneforge.config import make_config
from tuneforge.train.dry_run import decoder_shape_from_json, dry_run_report, estimate_from_shape

ROOT = Path(__file__).resolve().parents[2]
DEMO_DATA = ROOT / "src" / "tuneforge" / "demo" / "data"


def _values(model_dir, tmp_path, **extra):
    return {"model_name_or_path": str(model_dir), "stage": "sft", "do_train": True, "dataset": "demo_alpaca",
            "dataset_dir": str(DEMO_DATA), "template": "qwen", "cutoff_len": 128, "output_dir": str(tmp_path / "out"),
            "per_device_train_batch_size": 2, "gradient_accumulation_steps": 2, "num_train_epochs": 2.0, **extra}


@pytest.mark.parametrize("finetuning_type", ["full", "lora"])
def test_estimate_from_config_equals_the_estimate_of_the_loaded_model(tiny_llama_dir, tmp_path, finetuning_type):
    """Same arithmetic, two inputs: config.json numbers, and the real model with its adapters attached."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tuneforge.train.memory_estimate import estimate_training_memory

    cfg = make_config(_values(tiny_llama_dir, tmp_path, finetuning_type=finetuning_type))
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32, attn_implementation="sdpa")
    model.gradient_checkpointing_enable()
    base_parameters = sum(p.numel() for p in model.parameters())
    if finetuning_type == "lora":
        model = get_peft_model(model, LoraConfig(r=cfg.lora.lora_rank, target_modules=[
            "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], lora_dropout=0.0))
    loaded = estimate_training_memory(model, cfg, cfg.training_args)

    shape = decoder_shape_from_json(json.loads((Path(tiny_llama_dir) / "config.json").read_text()))
    planned = estimate_from_shape(shape, cfg)
    assert shape.parameters() == base_parameters
    assert (planned.weights, planned.gradients, planned.optimizer, planned.activations, planned.tokens) == (
        loaded.weights, loaded.gradients, loaded.optimizer, loaded.activations, loaded.tokens)


def test_report_names_the_plan(tiny_llama_dir, tmp_path):
    cfg = make_config(_values(tiny_llama_dir, tmp_path, finetuning_type="lora", lora_rank=4))
    rows = len(json.loads((DEMO_DATA / "demo_alpaca.json").read_text()))
    lines = dry_run_report(cfg).splitlines()
    shape = decoder_shape_from_json(json.loads((Path(tiny_llama_dir) / "config.json").read_text()))
    assert lines[1] == "stage:        sft"
    assert lines[2] == "method:       lora (rank 4, targets all)"
    assert lines[3].startswith(f"model:        {tiny_llama_dir} (LlamaForCausalLM, "
                               f"{shape.parameters() / 1e6:.1f}M parameters, 2 layers, hidden 64, vocab")
    assert lines[4] == "template:     qwen, cutoff_len 128"
    assert lines[5].startswith(f"data:         demo_alpaca: {rows:,} rows, about ")
    per_epoch = -(-rows // 4)  # 2 rows x 2 accumulation steps per optimizer step
    assert lines[6].startswith(f"steps:        about {2 * per_epoch:,} ({per_epoch:,} per epoch x 2 epochs")
    assert lines[7] == f"devices:      cpu ({os.cpu_count()} cores)"
    assert lines[8] == "launcher:     this process (no torchrun)"
    assert lines[-1].startswith("Estimated peak training memory per device: ")
    assert "(256 tokens/micro-batch)" in lines[-1]


def test_cli_dry_run_imports_no_torch(tiny_llama_dir, tmp_path):
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(_values(tiny_llama_dir, tmp_path, finetuning_type="lora", max_steps=7)))
    code = ("import sys; from tuneforge.cli import main; code = main(['train', '--dry-run', sys.argv[1]]); "
            "print('torch imported:', 'torch' in sys.modules); sys.exit(code)")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "steps:        7 (max_steps)" in done.stdout
    assert done.stdout.strip().endswith("torch imported: False")
    assert not (tmp_path / "out").exists()  # nothing was trained or written


def test_a_gguf_model_not_converted_yet_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    cfg = make_config({"model_name_or_path": str(model), "stage": "sft", "do_train": True, "dataset": "demo_alpaca",
                       "dataset_dir": str(DEMO_DATA), "template": "qwen", "output_dir": str(tmp_path / "o")})
    from tuneforge.errors import ConfigError

    with pytest.raises(ConfigError, match="has not been converted yet"):
        dry_run_report(cfg)
