"""S²-Attn (shift_attn): in training, tokens attend within groups of L/4, half of the heads on groups
shifted by half a group; evaluation uses full attention; only llama models take it."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

from tuneforge.errors import ConfigError
from tuneforge.model.loader import load_model
from tuneforge.model.shift_attn import PREFIX, check_shift_attn, shifted_group_attention
from tuneforge.testing.tiny_model import build_tiny_model, tiny_config

LENGTH = 16  # groups of 4; the shifted heads see groups {2..5}, {6..9}, {10..13}, {14, 15, 0, 1}


def _attended(output):
    """Which key positions each query averaged over (values are one-hot positions, scores all equal)."""
    return [set((row > 1e-6).nonzero().flatten().tolist()) for row in output]


def test_heads_attend_within_groups_and_half_of_them_shifted():
    module = torch.nn.Module()
    module.num_key_value_groups = 1
    module.training = True
    heads = 4
    query = torch.zeros(1, heads, LENGTH, LENGTH)  # equal scores: each query averages the values it may see
    key = torch.zeros(1, heads, LENGTH, LENGTH)
    value = torch.eye(LENGTH).expand(1, heads, LENGTH, LENGTH)
    output, _ = shifted_group_attention(module, query, key, value, attention_mask=None)
    assert output.shape == (1, LENGTH, heads, LENGTH)
    plain, shifted = _attended(output[0, :, 0]), _attended(output[0, :, heads - 1])
    assert _attended(output[0, :, 1]) == plain and _attended(output[0, :, 2]) == shifted
    # unshifted heads: causal within [0..3], [4..7], ...
    assert plain == [set(range(i - i % 4, i + 1)) for i in range(LENGTH)]
    # shifted heads: groups start at 2 (positions rolled by half a group); the last group wraps around and
    # keeps the row's causal order, so positions 0 and 1 never see 14 and 15
    assert shifted[0:2] == [{0}, {0, 1}]
    assert shifted[2:6] == [{2}, {2, 3}, {2, 3, 4}, {2, 3, 4, 5}]
    assert shifted[9] == {6, 7, 8, 9}
    assert shifted[14:16] == [{0, 1, 14}, {0, 1, 14, 15}]


def test_padding_keys_stay_masked_inside_groups():
    module = torch.nn.Module()
    module.num_key_value_groups = 1
    mask = torch.ones(1, 1, LENGTH, LENGTH, dtype=torch.bool).tril()
    mask[..., 5] = False  # position 5 is padding
    value = torch.eye(LENGTH).expand(1, 2, LENGTH, LENGTH)
    zeros = torch.zeros(1, 2, LENGTH, LENGTH)
    output, _ = shifted_group_attention(module, zeros, zeros, value, attention_mask=mask)
    assert _attended(output[0, :, 0])[7] == {4, 6, 7}
    assert _attended(output[0, :, 1])[5] == {2, 3, 4}


@pytest.fixture(scope="module")
def one_layer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_llama_s2")
    build_tiny_model(path, layers=1)
    return path


def _load(model_dir, tmp_path, **values):
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    cfg = tiny_config(model_name_or_path=str(model_dir), output_dir=str(tmp_path / "out"), finetuning_type="full",
                      shift_attn=True, disable_gradient_checkpointing=True, **values)
    return load_model(cfg, tokenizer, is_trainable=True)


def _changed_positions(model, ids):
    """Positions whose logits move when the first token changes."""
    other = ids.clone()
    other[0, 0] = (ids[0, 0] + 1) % model.config.vocab_size
    with torch.no_grad():
        delta = (model(input_ids=ids).logits - model(input_ids=other).logits).abs().amax(dim=-1)[0]
    return set((delta > 1e-6).nonzero().flatten().tolist())


@pytest.mark.parametrize("flash_attn", ["sdpa", "disabled"])
def test_model_attends_in_shifted_groups_while_training_only(one_layer_dir, tmp_path, flash_attn):
    model = _load(one_layer_dir, tmp_path, flash_attn=flash_attn)
    inner = "sdpa" if flash_attn == "sdpa" else "eager"
    assert model.config._attn_implementation == PREFIX + inner
    ids = torch.randint(0, model.config.vocab_size, (1, LENGTH), generator=torch.Generator().manual_seed(0))
    model.train()
    # one layer: token 0 reaches its own group (0..3) and, through the shifted heads, the wrapped group (14, 15)
    assert _changed_positions(model, ids) == {0, 1, 2, 3, 14, 15}
    model.eval()
    assert _changed_positions(model, ids) == set(range(LENGTH))
    base = AutoModelForCausalLM.from_pretrained(str(one_layer_dir)).eval()
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, base(input_ids=ids).logits, atol=1e-5)


def test_only_llama_models_take_shift_attn():
    cfg = tiny_config(model_name_or_path="x", shift_attn=True)
    with pytest.raises(ConfigError, match="shift_attn: S\\^2-Attn supports llama models \\(llama\\), not 'qwen2'"):
        check_shift_attn(Qwen2Config(), cfg.model, is_trainable=True)
    check_shift_attn(Qwen2Config(), cfg.model, is_trainable=False)  # inference: full attention, nothing to refuse
