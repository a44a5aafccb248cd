"""Finetuning methods: exactly which parameters train, adapter continue/stack/merge, clear name errors."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneforge.errors import ConfigError
from tuneforge.model.loader import load_model
from tuneforge.testing.tiny_model import tiny_config

LAYER_MODULES = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                 "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm"]


@pytest.fixture
def tokenizer(tiny_llama_dir):
    return AutoTokenizer.from_pretrained(str(tiny_llama_dir))


def _load(tiny_llama_dir, tokenizer, tmp_path, is_trainable=True, **values):
    cfg = tiny_config(model_name_or_path=str(tiny_llama_dir), output_dir=str(tmp_path / "out"), **values)
    return load_model(cfg, tokenizer, is_trainable=is_trainable)


def _trainable(model):
    return {name for name, param in model.named_parameters() if param.requires_grad}


def _layer(index, modules=LAYER_MODULES):
    return {f"model.layers.{index}.{module}.weight" for module in modules}


def test_full_trains_everything(tiny_llama_dir, tokenizer, tmp_path):
    model = _load(tiny_llama_dir, tokenizer, tmp_path, finetuning_type="full")
    assert _trainable(model) == {name for name, _ in model.named_parameters()}


@pytest.mark.parametrize("layers, expected_layer", [(1, 1), (-1, 0)])
def test_freeze_trains_last_or_first_layers(tiny_llama_dir, tokenizer, tmp_path, layers, expected_layer):
    model = _load(tiny_llama_dir, tokenizer, tmp_path, finetuning_type="freeze", freeze_trainable_layers=layers)
    assert _trainable(model) == _layer(expected_layer)


def test_freeze_modules_and_extra_modules_match_exact_names(tiny_llama_dir, tokenizer, tmp_path):
    model = _load(tiny_llama_dir, tokenizer, tmp_path, finetuning_type="freeze", freeze_trainable_layers=2,
                  freeze_trainable_modules="mlp", freeze_extra_modules="embed_tokens,norm")
    mlp = ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    # "norm" is the final model.norm only, not every layer's input_layernorm
    assert _trainable(model) == _layer(0, mlp) | _layer(1, mlp) | {"model.embed_tokens.weight", "model.norm.weight"}


def test_freeze_unknown_module_lists_the_available_ones(tiny_llama_dir, tokenizer, tmp_path):
    with pytest.raises(ConfigError) as error:
        _load(tiny_llama_dir, tokenizer, tmp_path, finetuning_type="freeze", freeze_trainable_modules="mlpx")
    assert str(error.value) == ("freeze_trainable_modules: module 'mlpx' is not in the decoder layers; choose from: "
                                "all, input_layernorm, mlp, post_attention_layernorm, self_attn")
    with pytest.raises(ConfigError) as error:
        _load(tiny_llama_dir, tokenizer, tmp_path, finetuning_type="freeze", freeze_extra_modules="embeddings")
    assert str(error.value) == ("freeze_extra_modules: module 'embeddings' is not outside the decoder layers; "
                                "choose from: embed_tokens, lm_head, norm")


def test_lora_all_wraps_every_linear_layer_but_the_head(tiny_llama_dir, tokenizer, tmp_path):
    model = _load(tiny_llama_dir, tokenizer, tmp_path, finetuning_type="lora", lora_rank=4)
    config = model.peft_config["default"]
    assert set(config.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert (config.r, config.lora_alpha, config.lora_dropout) == (4, 8, 0.0)  # alpha defaults to 2 x rank
    assert all(".lora_A." in name or ".lora_B." in name for name in _trainable(model))
    assert len(_trainable(model)) == 2 * 7 * 2  # A and B, 7 modules, 2 layers


def test_lora_named_targets_and_additional_target(tiny_llama_dir, tokenizer, tmp_path):
    model = _load(tiny_llama_dir, tokenizer, tmp_path, finetuning_type="lora", lora_target="q_proj,v_proj",
                  additional_target="lm_head", lora_alpha=32, lora_dropout=0.1)
    config = model.peft_config["default"]
    assert set(config.target_modules) == {"q_proj", "v_proj"}
    assert config.modules_to_save == ["lm_head"]
    assert (config.lora_alpha, config.lora_dropout) == (32, 0.1)
    trainable = _trainable(model)
    assert "base_model.model.lm_head.modules_to_save.default.weight" in trainable
    assert {name.split(".")[-4] for name in trainable if "lora_" in name} == {"q_proj", "v_proj"}


def test_lora_unknown_names_list_the_available_ones(tiny_llama_dir, tokenizer, tmp_path):
    with pytest.raises(ConfigError) as error:
        _load(tiny_llama_dir, tokenizer, tmp_path, finetuning_type="lora", lora_target="qproj")
    assert str(error.value) == ("lora_target: module 'qproj' is not in the model; choose from: all, down_proj, "
                                "gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj")
    unknown_extra = "additional_target: module 'head' is not in the model; choose from: .*lm_head"
    with pytest.raises(ConfigError, match=unknown_extra):
        _load(tiny_llama_dir, tokenizer, tmp_path, finetuning_type="lora", additional_target="head")


def _save_adapter(tiny_llama_dir, tokenizer, tmp_path, name, seed):
    """A LoRA adapter with non-zero B (so it changes the logits), saved with plain peft."""
    model = _load(tiny_llama_dir, tokenizer, tmp_path, finetuning_type="lora", lora_target="q_proj,v_proj")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if "lora_B" in param_name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    path = tmp_path / name
    model.save_pretrained(str(path))
    return str(path)


def _logits(model, tokenizer):
    ids = torch.tensor([tokenizer("Hello world, how are you?")["input_ids"]])
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


# Merged (reference) and unmerged (trainable adapter) weights round differently: compare to 1e-4.

def _reference_logits(tiny_llama_dir, tokenizer, adapters):
    """Base model + adapters applied with plain peft, merged one after another."""
    from peft import PeftModel

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    for adapter in adapters:
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return _logits(model, tokenizer)


def test_adapter_continue_stack_and_create_new(tiny_llama_dir, tokenizer, tmp_path):
    first = _save_adapter(tiny_llama_dir, tokenizer, tmp_path, "first", seed=1)
    second = _save_adapter(tiny_llama_dir, tokenizer, tmp_path, "second", seed=2)
    base = _reference_logits(tiny_llama_dir, tokenizer, [])
    expected_one = _reference_logits(tiny_llama_dir, tokenizer, [first])
    expected_two = _reference_logits(tiny_llama_dir, tokenizer, [first, second])
    assert not torch.allclose(base, expected_one, atol=1e-3)

    # continue training the adapter: it stays a trainable adapter with its saved weights
    model = _load(tiny_llama_dir, tokenizer, tmp_path, finetuning_type="lora", adapter_name_or_path=first)
    assert _trainable(model) and all("lora_" in name for name in _trainable(model))
    assert torch.allclose(_logits(model, tokenizer), expected_one, atol=1e-4)

    # stack: the first is merged into the base, the second keeps training
    model = _load(tiny_llama_dir, tokenizer, tmp_path, finetuning_type="lora", adapter_name_or_path=f"{first},{second}")
    assert torch.allclose(_logits(model, tokenizer), expected_two, atol=1e-4)

    # create_new_adapter: everything merged, a fresh (zero-effect) adapter on top
    model = _load(tiny_llama_dir, tokenizer, tmp_path, finetuning_type="lora", adapter_name_or_path=first,
                  create_new_adapter=True)
    assert torch.allclose(_logits(model, tokenizer), expected_one, atol=1e-4)
    assert all(param.abs().sum() == 0 for name, param in model.named_parameters() if "lora_B" in name)

    # inference: adapters merged into a plain model
    model = _load(tiny_llama_dir, tokenizer, tmp_path, is_trainable=False, finetuning_type="lora",
                  adapter_name_or_path=f"{first},{second}")
    assert not hasattr(model, "peft_config")
    assert torch.allclose(_logits(model, tokenizer), expected_two, atol=1e-4)


def test_adapter_errors(tiny_llama_dir, tokenizer, tmp_path):
    (tmp_path / "not_an_adapter").mkdir()
    with pytest.raises(ConfigError, match="has no adapter_config.json"):
        _load(tiny_llama_dir, tokenizer, tmp_path, finetuning_type="lora",
              adapter_name_or_path=str(tmp_path / "not_an_adapter"))
    with pytest.raises(ConfigError, match="adapter_name_or_path .*lora"):
        _load(tiny_llama_dir, tokenizer, tmp_path, finetuning_type="freeze",
              adapter_name_or_path=str(tmp_path / "not_an_adapter"))


def test_a_missing_adapter_is_reported_before_the_base_weights_load(tiny_llama_dir, tmp_path, monkeypatch):
    import tuneforge.model.loader as loader

    class NoWeights:
        @staticmethod
        def from_pretrained(*args, **kwargs):
            raise AssertionError("the base weights were loaded before the adapter path was checked")

    monkeypatch.setattr(loader, "_model_class_for", lambda config: NoWeights)
    cfg = tiny_config(model_name_or_path=str(tiny_llama_dir), adapter_name_or_path=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="adapter_name_or_path: directory .*missing' does not exist"):
        load_model(cfg, AutoTokenizer.from_pretrained(str(tiny_llama_dir)), is_trainable=False)
