"""Optimizer state memory of each `optim` / GaLore / APOLLO / BAdam choice, relative to AdamW (not a test).

    python bench/optimizer_memory.py [--hidden 256] [--layers 4] [--rank 16]

Full fine-tuning of a llama-like model built here with random weights. Each optimizer takes one step on one
batch; then the bytes of every tensor it keeps (moments, 8-bit state and quantization maps, projection
matrices, BAdam's fp32 copy of the active block) are summed. Weights and gradients are the same for all
choices and are not counted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

CHOICES = {
    "adamw_torch": {"optim": "adamw_torch"},
    "adamw_8bit": {"optim": "adamw_8bit"},
    "adafactor": {"optim": "adafactor"},
    "galore": {"use_galore": True, "optim": "adamw_torch"},
    "galore_layerwise": {"use_galore": True, "galore_layerwise": True, "optim": "adamw_torch"},
    "apollo": {"use_apollo": True, "optim": "adamw_torch"},
    "badam_layer": {"use_badam": True, "optim": "adamw_torch"},
    "badam_ratio": {"use_badam": True, "badam_mode": "ratio", "optim": "adamw_torch"},
}


def tensor_bytes(value) -> int:
    if torch.is_tensor(value):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(tensor_bytes(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(item) for item in value)
    if hasattr(value, "__dict__"):  # GaLore / APOLLO projector objects hold their matrices as attributes
        return sum(tensor_bytes(item) for item in vars(value).values())
    return 0


def state_bytes(optimizer) -> int:
    inner = getattr(optimizer, "optimizer_dict", None)
    if inner:  # layer-wise: one optimizer per parameter
        return sum(state_bytes(each) for each in inner.values())
    total = sum(tensor_bytes(state) for state in optimizer.state.values())
    base = getattr(optimizer, "base_optimizer", None)
    if base is not None:  # BAdam layer-wise: moments live in the base optimizer, plus fp32 copies of the block
        total += sum(tensor_bytes(state) for state in base.state.values())
        total += sum(tensor_bytes(p) for p in getattr(optimizer, "param_idx2hp", {}).values())
    return total


def measure(model_dir: str, values: dict, rank: int) -> int:
    from transformers import AutoModelForCausalLM, Trainer

    from tuneforge.model.adapters import apply_finetuning
    from tuneforge.testing.tiny_model import tiny_config
    from tuneforge.train.optim.optimizers import create_custom_optimizer

    cfg = tiny_config(model_name_or_path=model_dir, output_dir="unused", report_to="none", finetuning_type="full",
                      galore_rank=rank, apollo_rank=rank, **values)
    model = apply_finetuning(AutoModelForCausalLM.from_pretrained(model_dir), cfg, is_trainable=True)
    optimizer = create_custom_optimizer(model, cfg.training_args, cfg)
    if optimizer is None:
        optimizer_class, kwargs = Trainer.get_optimizer_cls_and_kwargs(cfg.training_args)
        optimizer = optimizer_class([p for p in model.parameters() if p.requires_grad], **kwargs)
    ids = torch.randint(3, 500, (2, 64), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    return state_bytes(optimizer)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--rank", type=int, default=16)
    options = parser.parse_args()
    torch.set_num_threads(1)
    from tuneforge.testing.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as model_dir:
        model, _ = build_tiny_model(model_dir, hidden=options.hidden, layers=options.layers,
                                    heads=max(4, options.hidden // 64), kv_heads=2, vocab_size=4000)
        params = sum(p.numel() for p in model.parameters())
        print(f"model: {params / 1e6:.2f}M parameters (hidden {options.hidden}, {options.layers} layers); "
              f"GaLore/APOLLO rank {options.rank}")
        baseline = None
        print(f"{'optimizer':<18} {'state MiB':>10} {'vs adamw_torch':>15}")
        for name, values in CHOICES.items():
            size = measure(model_dir, values, options.rank)
            baseline = baseline or size
            print(f"{name:<18} {size / 2**20:>10.2f} {size / baseline:>14.2f}x")


if __name__ == "__main__":
    main()
