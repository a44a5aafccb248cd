"""load_model: precision, attention, gradient checkpointing, hub errors, vocabulary resize."""

import logging

import pytest
import torch
from transformers import AutoTokenizer

from tuneforge.errors import ConfigError
from tuneforge.model.loader import load_model
from tuneforge.testing.tiny_model import tiny_config


@pytest.fixture
def tokenizer(tiny_llama_dir):
    return AutoTokenizer.from_pretrained(str(tiny_llama_dir))


def _cfg(tiny_llama_dir, tmp_path, **values):
    return tiny_config(model_name_or_path=str(tiny_llama_dir), output_dir=str(tmp_path / "out"), **values)


def _is_checkpointing(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return any(getattr(module, "gradient_checkpointing", False) for module in base.modules())


def test_lora_default_prints_trainable_count_and_checkpoints(tiny_llama_dir, tokenizer, tmp_path, capsys):
    model = load_model(_cfg(tiny_llama_dir, tmp_path), tokenizer)
    assert "trainable params: 16,384 || all params: 173,632 || trainable%: 9.4360" in capsys.readouterr().out
    assert model.training
    assert _is_checkpointing(model)
    assert model.config.use_cache is False


def test_disable_gradient_checkpointing(tiny_llama_dir, tokenizer, tmp_path):
    model = load_model(_cfg(tiny_llama_dir, tmp_path, finetuning_type="full", disable_gradient_checkpointing=True),
                       tokenizer)
    assert not _is_checkpointing(model)


def test_inference_load_is_frozen_and_in_eval_mode(tiny_llama_dir, tokenizer, tmp_path, capsys):
    model = load_model(_cfg(tiny_llama_dir, tmp_path, finetuning_type="full"), tokenizer, is_trainable=False)
    assert not model.training
    assert not any(param.requires_grad for param in model.parameters())
    assert "all params: 157,248" in capsys.readouterr().out


def test_fp32_by_default(tiny_llama_dir, tokenizer, tmp_path):
    model = load_model(_cfg(tiny_llama_dir, tmp_path, finetuning_type="full"), tokenizer)
    assert {param.dtype for param in model.parameters()} == {torch.float32}


def test_bf16_keeps_frozen_weights_in_bf16_and_trainable_master_weights_in_fp32(tiny_llama_dir, tokenizer, tmp_path):
    model = load_model(_cfg(tiny_llama_dir, tmp_path, bf16=True), tokenizer)
    trainable = {param.dtype for param in model.parameters() if param.requires_grad}
    frozen = {param.dtype for param in model.parameters() if not param.requires_grad}
    assert trainable == {torch.float32}
    assert frozen == {torch.bfloat16}


def test_pure_bf16_keeps_everything_in_bf16(tiny_llama_dir, tokenizer, tmp_path):
    model = load_model(_cfg(tiny_llama_dir, tmp_path, pure_bf16=True), tokenizer)
    assert {param.dtype for param in model.parameters()} == {torch.bfloat16}


def test_fp16_on_cpu_is_refused_instead_of_silently_running_fp32(tiny_llama_dir, tokenizer, tmp_path):
    with pytest.raises(ConfigError, match="fp16: true on a CPU: transformers would silently train in fp32"):
        load_model(_cfg(tiny_llama_dir, tmp_path, fp16=True), tokenizer)


@pytest.mark.parametrize("choice, expected", [("disabled", "eager"), ("sdpa", "sdpa"), ("auto", "sdpa")])
def test_attention_choice(tiny_llama_dir, tokenizer, tmp_path, caplog, choice, expected):
    with caplog.at_level(logging.INFO, logger="tuneforge"):
        model = load_model(_cfg(tiny_llama_dir, tmp_path, flash_attn=choice), tokenizer)
    assert model.config._attn_implementation == expected
    if choice == "auto":
        assert "flash_attn: auto picked sdpa" in caplog.text


def test_fa2_without_cuda_is_a_clear_error(tiny_llama_dir, tokenizer, tmp_path):
    with pytest.raises(ConfigError, match=r"flash_attn: fa2 needs a CUDA GPU \(none is available here\)"):
        load_model(_cfg(tiny_llama_dir, tmp_path, flash_attn="fa2"), tokenizer)


def test_offline_hub_id_names_it_and_says_how_to_use_a_local_dir(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = tiny_config(model_name_or_path="some-org/none-such-model", output_dir=str(tmp_path))
    with pytest.raises(ConfigError) as error:
        load_model(cfg, tokenizer)
    message = str(error.value)
    assert "cannot load 'some-org/none-such-model' from the Hugging Face hub" in message
    assert "offline (HF_HUB_OFFLINE=1)" in message
    assert "set model_name_or_path: ./none-such-model" in message


def test_missing_local_directory(tokenizer, tmp_path):
    cfg = tiny_config(model_name_or_path="./no/such/model", output_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="model_name_or_path: directory './no/such/model' does not exist"):
        load_model(cfg, tokenizer)


def test_modelscope_without_its_package(tokenizer, tmp_path, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("modelscope") is not None:
        pytest.skip("modelscope is installed here")
    monkeypatch.setenv("USE_MODELSCOPE_HUB", "1")
    cfg = tiny_config(model_name_or_path="qwen/Qwen2-0.5B", output_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="USE_MODELSCOPE_HUB=1 needs the modelscope package"):
        load_model(cfg, tokenizer)


def test_added_tokens_grow_embeddings_initialised_near_the_old_mean(tiny_llama_dir, tokenizer, tmp_path):
    original = load_model(_cfg(tiny_llama_dir, tmp_path, finetuning_type="full"), tokenizer, is_trainable=False)
    old_input = original.get_input_embeddings().weight.detach().clone()
    old_output = original.get_output_embeddings().weight.detach().clone()

    tokenizer.add_tokens(["<new_a>", "<new_b>"], special_tokens=True)
    cfg = _cfg(tiny_llama_dir, tmp_path, finetuning_type="full", add_special_tokens="<new_a>,<new_b>")
    model = load_model(cfg, tokenizer)
    rows = old_input.size(0)
    assert rows == 650
    new_input = model.get_input_embeddings().weight.detach()
    new_output = model.get_output_embeddings().weight.detach()
    assert new_input.size(0) == new_output.size(0) == model.config.vocab_size == 704  # padded to 64
    assert torch.equal(new_input[:rows], old_input) and torch.equal(new_output[:rows], old_output)
    for old, new in ((old_input, new_input), (old_output, new_output)):
        # 54 new rows = mean + N(0, 1/8): their average sits within a few standard errors of the old mean.
        assert (new[rows:].mean(0) - old.mean(0)).abs().max() < 0.08
        assert new[rows:].std() < 0.2


def test_tokenizer_larger_than_model_without_resize_vocab(tiny_llama_dir, tokenizer, tmp_path):
    tokenizer.add_tokens(["<surprise>"], special_tokens=True)
    with pytest.raises(ConfigError, match="set resize_vocab: true"):
        load_model(_cfg(tiny_llama_dir, tmp_path, finetuning_type="full"), tokenizer)
