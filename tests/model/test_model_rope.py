"""RoPE scaling: the factor LLaMA-Factory computes from cutoff_len lands in the model config, and the
scaled model really computes with stretched positions on an input longer than the pretrained length."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneforge.errors import ConfigError
from tuneforge.model.loader import load_model
from tuneforge.testing.tiny_model import build_tiny_model, tiny_config

PRETRAINED_LENGTH = 32


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_llama_rope")
    build_tiny_model(path, max_positions=PRETRAINED_LENGTH)
    return path


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return AutoTokenizer.from_pretrained(str(model_dir))


@pytest.fixture(scope="module")
def base(model_dir):
    return AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()


def _load(model_dir, tokenizer, tmp_path, is_trainable=True, **values):
    cfg = tiny_config(model_name_or_path=str(model_dir), output_dir=str(tmp_path / "out"), finetuning_type="full",
                      **values)
    return load_model(cfg, tokenizer, is_trainable=is_trainable).eval()


def _logits(model, ids, positions):
    with torch.no_grad():
        # An explicit mask: without one, transformers reads non-consecutive position ids as packed rows.
        return model(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=positions.unsqueeze(0),
                     use_cache=False).logits


@pytest.mark.parametrize("rope_type, cutoff_len, extra", [
    ("linear", 80, {}),
    ("dynamic", 80, {"original_max_position_embeddings": 32}),
    ("yarn", 64, {"original_max_position_embeddings": 32}),
    ("llama3", 100, {"original_max_position_embeddings": 32, "low_freq_factor": 1.0, "high_freq_factor": 4.0}),
])
def test_training_factor_is_ceil_of_cutoff_over_pretrained_length(model_dir, tokenizer, tmp_path, rope_type,
                                                                    cutoff_len, extra):
    model = _load(model_dir, tokenizer, tmp_path, rope_scaling=rope_type, cutoff_len=cutoff_len)
    factor = float(-(-cutoff_len // PRETRAINED_LENGTH))  # 80/32 -> 3, 64/32 -> 2, 100/32 -> 4
    assert model.config.rope_parameters == {"rope_theta": 10000.0, "rope_type": rope_type, "factor": factor,
                                            **extra}
    assert model.config.max_position_embeddings == PRETRAINED_LENGTH * factor


def test_inference_factor_is_two_and_short_cutoff_disables_scaling(model_dir, tokenizer, tmp_path):
    model = _load(model_dir, tokenizer, tmp_path, is_trainable=False, rope_scaling="linear")
    assert model.config.rope_parameters["factor"] == 2.0
    assert model.config.max_position_embeddings == 64
    model = _load(model_dir, tokenizer, tmp_path, rope_scaling="linear", cutoff_len=PRETRAINED_LENGTH)
    assert model.config.rope_parameters == {"rope_theta": 10000.0, "rope_type": "default"}


def test_linear_scaling_stretches_positions_on_a_long_input(model_dir, tokenizer, tmp_path, base):
    # factor 2: position 2k of the scaled model is position k of the original, so the scaled model on
    # positions 0, 2, 4, ... reproduces the original on 0, 1, 2, ... -- and on an input of 60 tokens
    # (beyond the 32 pretrained positions) it differs from the original run on the same positions.
    model = _load(model_dir, tokenizer, tmp_path, rope_scaling="linear", cutoff_len=64)
    ids = torch.randint(0, base.config.vocab_size, (1, 60), generator=torch.Generator().manual_seed(0))
    positions = torch.arange(60)
    assert torch.allclose(_logits(model, ids, 2 * positions), _logits(base, ids, positions), atol=1e-4)
    assert not torch.allclose(_logits(model, ids, positions), _logits(base, ids, positions), atol=1e-2)


@pytest.mark.parametrize("rope_type", ["dynamic", "yarn", "llama3"])
def test_other_methods_change_the_logits_of_a_long_input(model_dir, tokenizer, tmp_path, base, rope_type):
    model = _load(model_dir, tokenizer, tmp_path, rope_scaling=rope_type, cutoff_len=64)
    ids = torch.randint(0, base.config.vocab_size, (1, 80), generator=torch.Generator().manual_seed(1))
    positions = torch.arange(80)
    scaled, original = _logits(model, ids, positions), _logits(base, ids, positions)
    assert torch.isfinite(scaled).all()
    assert not torch.allclose(scaled, original, atol=1e-3)
    if rope_type == "dynamic":
        # transformers' dynamic NTK rescales only past max_position_embeddings, which LLaMA-Factory's rule
        # has already enlarged to 32 x 2 = 64: an input of 60 tokens still runs unscaled.
        short = positions[:60]
        assert torch.allclose(_logits(model, ids[:, :60], short), _logits(base, ids[:, :60], short), atol=1e-5)


def test_model_without_rope_parameters_is_refused():
    from types import SimpleNamespace

    from tuneforge.model.rope import configure_rope

    cfg = tiny_config(model_name_or_path="unused", rope_scaling="linear", cutoff_len=64)
    with pytest.raises(ConfigError, match="cannot be RoPE-scaled here .*no rotary position embeddings"):
        configure_rope(SimpleNamespace(max_position_embeddings=32), cfg.model, cfg.data, True)
