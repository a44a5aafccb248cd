"""LLaMA Pro: `tuneforge expand` inserts identity blocks (outputs unchanged), and use_llama_pro training
(freeze or LoRA) touches only the inserted blocks."""

import os

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneforge import cli
from tuneforge.errors import ConfigError
from tuneforge.model.loader import load_model
from tuneforge.testing.tiny_model import tiny_config

from test_train_recipes import run_recipe


def _logits(model, ids):
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.fixture(scope="module")
def expanded(tiny_llama_dir, tmp_path_factory):
    """A 2-layer llama expanded by 2 blocks with the CLI: layers 0, new (1), 1 -> 2, new (3)."""
    base_dir = tiny_llama_dir
    out_dir = tmp_path_factory.mktemp("llama_pro_expanded")
    assert cli.main(["expand", "--model_name_or_path", str(base_dir), "--output_dir", str(out_dir),
                     "--num_expand", "2"]) == 0
    return base_dir, out_dir


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_expanded_model_computes_what_the_original_did(expanded, tiny_qwen2_dir, tmp_path, arch):
    if arch == "llama":
        base_dir, out_dir = expanded
    else:  # qwen2 configs carry a per-layer `layer_types` list that must grow too
        base_dir, out_dir = tiny_qwen2_dir, tmp_path / "expanded"
        assert cli.main(["expand", "--model_name_or_path", str(base_dir), "--output_dir", str(out_dir),
                         "--num_expand", "1"]) == 0
    base = AutoModelForCausalLM.from_pretrained(str(base_dir))
    grown = AutoModelForCausalLM.from_pretrained(str(out_dir))
    assert grown.config.num_hidden_layers == (4 if arch == "llama" else 3)
    tokenizer = AutoTokenizer.from_pretrained(str(out_dir))  # the tokenizer is copied along
    ids = torch.tensor([tokenizer("Hello world, how are you today?")["input_ids"]])
    assert torch.allclose(_logits(grown, ids), _logits(base, ids), atol=1e-5)
    # the inserted block is a copy of the layer before it with its output projections zeroed
    source, copy = base.model.layers[-1], grown.model.layers[-1]
    assert torch.equal(copy.self_attn.q_proj.weight, source.self_attn.q_proj.weight)
    assert copy.self_attn.o_proj.weight.abs().sum() == 0 and copy.mlp.down_proj.weight.abs().sum() == 0


def test_expand_refuses_a_count_that_does_not_divide_the_layers(expanded, tmp_path, capsys):
    base_dir, _ = expanded
    assert cli.main(["expand", "--model_name_or_path", str(base_dir), "--output_dir", str(tmp_path / "x"),
                     "--num_expand", "3"]) == 2
    assert "num_expand: the model's 2 layers must be divisible by num_expand (got 3)" in capsys.readouterr().err


def test_freeze_training_changes_only_the_inserted_blocks(expanded, tmp_path):
    _, out_dir = expanded
    run_dir = tmp_path / "run"
    run_recipe("sft", out_dir, run_dir, finetuning_type="freeze", use_llama_pro=True, freeze_trainable_layers=2,
               learning_rate=1e-2, max_steps=3, save_steps=100)
    before = load_file(os.path.join(out_dir, "model.safetensors"))
    after = load_file(os.path.join(run_dir, "model.safetensors"))
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    inserted = {name for name in before if name.startswith(("model.layers.1.", "model.layers.3."))}
    assert changed == inserted


def test_lora_adapts_only_the_inserted_blocks(expanded, tmp_path):
    _, out_dir = expanded
    tokenizer = AutoTokenizer.from_pretrained(str(out_dir))
    cfg = tiny_config(model_name_or_path=str(out_dir), output_dir=str(tmp_path / "out"), finetuning_type="lora",
                      use_llama_pro=True, freeze_trainable_layers=2, lora_target="q_proj,down_proj")
    model = load_model(cfg, tokenizer, is_trainable=True)
    adapted = {name.split(".lora_")[0] for name, _ in model.named_parameters() if ".lora_A." in name}
    assert adapted == {f"base_model.model.model.layers.{layer}.{module}" for layer in (1, 3)
                       for module in ("self_attn.q_proj", "mlp.down_proj")}
    with pytest.raises(ConfigError, match="4 layers are not divisible by freeze_trainable_layers 3"):
        load_model(cfg.replace(freeze_trainable_layers=3), tokenizer, is_trainable=True)
    # `tuneforge expand` recorded the inserted layers, so a count that divides but does not match is caught
    with pytest.raises(ConfigError, match=r"expanded with num_expand 2 \(inserted layers \[1, 3\]\), but "
                                          r"freeze_trainable_layers 1 would train layers \[3\]"):
        load_model(cfg.replace(freeze_trainable_layers=1, finetuning_type="freeze"), tokenizer, is_trainable=True)
