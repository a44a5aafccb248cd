"""Boosters: which attention kernel `flash_attn` gets, Liger kernels and unsloth. No GPU here, so the
decisions are tested with the device and the installed packages faked; what cannot run is a ConfigError
raised before any data or weights load."""

import logging
import sys
import types

import pytest
import torch
import transformers.utils

from tuneforge.errors import ConfigError
from tuneforge.model import boosters
from tuneforge.model.boosters import apply_liger, check_unsloth, liger_patch, load_with_unsloth, resolve_attention
from tuneforge.testing.tiny_model import tiny_config


def _cfg(**values):
    return tiny_config(model_name_or_path="unused", **values)


def _attention(device, dtype, **values):
    cfg = _cfg(**values)
    return resolve_attention(cfg.model, cfg.data, device, dtype)


def _check_unsloth(cfg):
    return check_unsloth(cfg.model, cfg.method, cfg.quantization)


@pytest.fixture
def flash_attn_installed(monkeypatch):
    monkeypatch.setattr(transformers.utils, "is_flash_attn_2_available", lambda: True)
    monkeypatch.setattr(transformers.utils, "is_flash_attn_3_available", lambda: True)


def test_auto_on_cpu_picks_sdpa_and_says_why(caplog):
    with caplog.at_level(logging.INFO):
        assert _attention("cpu", torch.float32) == "sdpa"
    assert "flash_attn: auto picked sdpa (FlashAttention-2 needs a CUDA GPU (none is available here))" in caplog.text


@pytest.mark.parametrize("dtype, neat_packing, expected, reason", [
    (torch.bfloat16, False, "flash_attention_2", ""),
    (torch.float16, False, "flash_attention_2", ""),
    (torch.float32, False, "sdpa", "bf16 or fp16 training (it has no fp32 kernels)"),
    (torch.bfloat16, True, "sdpa", "no block-diagonal masks (neat_packing is on)"),
])
def test_auto_on_a_gpu_with_flash_attn(flash_attn_installed, caplog, dtype, neat_packing, expected, reason):
    with caplog.at_level(logging.INFO):
        assert _attention("cuda", dtype, neat_packing=neat_packing) == expected
    assert f"flash_attn: auto picked {expected}" in caplog.text
    assert reason in caplog.text


def test_auto_on_a_gpu_without_flash_attn_picks_sdpa(monkeypatch, caplog):
    monkeypatch.setattr(transformers.utils, "is_flash_attn_2_available", lambda: False)
    with caplog.at_level(logging.INFO):
        assert _attention("cuda", torch.bfloat16) == "sdpa"
    assert "FlashAttention-2 needs the flash-attn package" in caplog.text


@pytest.mark.parametrize("choice, expected", [("disabled", "eager"), ("sdpa", "sdpa")])
def test_explicit_eager_and_sdpa_run_anywhere(choice, expected):
    assert _attention("cpu", torch.float32, flash_attn=choice) == expected


def test_explicit_flash_attention_on_a_suitable_gpu(flash_attn_installed, monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *args: (9, 0))
    assert _attention("cuda", torch.bfloat16, flash_attn="fa2") == "flash_attention_2"
    assert _attention("cuda", torch.bfloat16, flash_attn="fa3") == "flash_attention_3"


@pytest.mark.parametrize("choice, device, capability, message", [
    ("fa3", "cpu", None, r"flash_attn: fa3 needs a CUDA GPU \(none is available here\). Use flash_attn: sdpa"),
    ("fa3", "cuda", (8, 0), r"flash_attn: fa3 needs a Hopper \(sm_90\) or newer GPU"),
    ("fa2", "cuda", (8, 0), r"flash_attn: fa2 needs bf16 or fp16 training"),
])
def test_explicit_flash_attention_that_cannot_run(flash_attn_installed, monkeypatch, choice, device, capability,
                                                  message):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *args: capability)
    with pytest.raises(ConfigError, match=message):
        _attention(device, torch.float32 if choice == "fa2" else torch.bfloat16, flash_attn=choice)


def test_fa2_requested_without_the_package(monkeypatch):
    monkeypatch.setattr(transformers.utils, "is_flash_attn_2_available", lambda: False)
    with pytest.raises(ConfigError, match=r"flash_attn: fa2 needs the flash-attn package >= 2.3.3 \(pip install"):
        _attention("cuda", torch.bfloat16, flash_attn="fa2")


# --- Liger ---------------------------------------------------------------------------------------

LLAMA = types.SimpleNamespace(model_type="llama")


@pytest.fixture
def fake_liger(monkeypatch):
    """liger_kernel.transformers with one llama patch that records how it was called."""
    calls = []

    def apply_liger_kernel_to_llama(rope=True, cross_entropy=False, fused_linear_cross_entropy=True):
        calls.append({"cross_entropy": cross_entropy, "fused_linear_cross_entropy": fused_linear_cross_entropy})

    package, module = types.ModuleType("liger_kernel"), types.ModuleType("liger_kernel.transformers")
    module.apply_liger_kernel_to_llama = apply_liger_kernel_to_llama
    module.apply_liger_kernel_to_qwen2 = apply_liger_kernel_to_llama
    monkeypatch.setitem(sys.modules, "liger_kernel", package)
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", module)
    monkeypatch.setattr(boosters, "installed", lambda name: name == "liger_kernel")
    return calls


def test_liger_off_or_inference_does_nothing():
    assert liger_patch(_cfg().model, LLAMA, "cuda", is_trainable=True) is None
    assert liger_patch(_cfg(enable_liger_kernel=True).model, LLAMA, "cpu", is_trainable=False) is None


def test_liger_on_cpu_is_refused():
    with pytest.raises(ConfigError, match="enable_liger_kernel needs a CUDA GPU"):
        liger_patch(_cfg(enable_liger_kernel=True).model, LLAMA, "cpu", is_trainable=True)


def test_liger_not_installed_names_the_package(monkeypatch):
    monkeypatch.setattr(boosters, "installed", lambda name: False)
    with pytest.raises(ConfigError, match="pip install liger-kernel"):
        liger_patch(_cfg(enable_liger_kernel=True).model, LLAMA, "cuda", is_trainable=True)


@pytest.mark.parametrize("stage, fused", [("sft", True), ("pt", True), ("dpo", False), ("rm", False)])
def test_liger_patches_the_architecture(fake_liger, stage, fused):
    patch = liger_patch(_cfg(enable_liger_kernel=True).model, LLAMA, "cuda", is_trainable=True)
    apply_liger(patch, stage)
    # Stages that read the logits get the plain Liger cross-entropy instead of the fused one.
    expected = {} if fused else {"cross_entropy": True, "fused_linear_cross_entropy": False}
    assert fake_liger == [{"cross_entropy": False, "fused_linear_cross_entropy": True, **expected}]


def test_liger_unsupported_architecture(fake_liger):
    with pytest.raises(ConfigError, match=r"no kernels for model type 'gpt2' \(it supports llama, qwen2\)"):
        liger_patch(_cfg(enable_liger_kernel=True).model, types.SimpleNamespace(model_type="gpt2"), "cuda", True)


# --- unsloth -------------------------------------------------------------------------------------


def test_unsloth_not_installed_is_refused(monkeypatch):
    monkeypatch.setattr(boosters, "installed", lambda name: False)
    assert _check_unsloth(_cfg()) is False
    with pytest.raises(ConfigError, match=r"use_unsloth needs the unsloth package \(pip install unsloth"):
        _check_unsloth(_cfg(use_unsloth=True))


@pytest.mark.parametrize("values, message", [
    (dict(finetuning_type="freeze"), "use_unsloth supports finetuning_type lora or full, not freeze"),
    (dict(quantization_bit=8), "use_unsloth quantizes only with bnb 4-bit; got bnb 8-bit"),
    (dict(quantization_bit=4, quantization_method="hqq"), "use_unsloth quantizes only with bnb 4-bit; got hqq 4-bit"),
])
def test_unsloth_combinations_it_cannot_honour(monkeypatch, values, message):
    monkeypatch.setattr(boosters, "installed", lambda name: name == "unsloth")
    with pytest.raises(ConfigError, match=message):
        _check_unsloth(_cfg(use_unsloth=True, **values))


def test_unsloth_loads_through_fast_language_model(monkeypatch):
    seen = {}

    class FastLanguageModel:
        @staticmethod
        def from_pretrained(**kwargs):
            seen.update(kwargs)
            return "model", "tokenizer"

    monkeypatch.setitem(sys.modules, "unsloth", types.SimpleNamespace(FastLanguageModel=FastLanguageModel))
    monkeypatch.setattr(boosters, "installed", lambda name: name == "unsloth")
    cfg = _cfg(use_unsloth=True, quantization_bit=4, cutoff_len=512)
    assert _check_unsloth(cfg) is True
    model = load_with_unsloth(cfg.model, cfg.data, cfg.method, cfg.quantization, "/models/x", LLAMA, torch.bfloat16,
                              "cuda", is_trainable=True)
    assert model == "model"
    assert (seen["model_name"], seen["load_in_4bit"], seen["dtype"], seen["max_seq_length"]) == (
        "/models/x", True, torch.bfloat16, 512)
    assert seen["use_gradient_checkpointing"] == "unsloth"


def test_boosters_fail_before_the_data_is_read(tmp_path, tiny_tokenizer_dir, monkeypatch):
    from tuneforge.testing.tiny_model import build_tiny_model
    from tuneforge.train import run_train

    build_tiny_model(tmp_path / "model", hidden=32, layers=1)
    import tuneforge.train.stages.sft as sft

    broken = tmp_path / "rows.json"  # a dataset the name checks accept; reading it is refused below
    broken.write_text('[{"instruction": "hi", "output": "there"}]')

    def data_read(*args, **kwargs):
        raise AssertionError("the data was read before the hardware check")

    monkeypatch.setattr(sft, "get_dataset", data_read)
    for key, message in [("enable_liger_kernel", "enable_liger_kernel needs a CUDA GPU"),
                         ("flash_attn", "flash_attn: fa3 needs a CUDA GPU")]:
        value = "fa3" if key == "flash_attn" else True
        with pytest.raises(ConfigError, match=message):
            run_train({"model_name_or_path": str(tmp_path / "model"), "output_dir": str(tmp_path / "out"),
                       "do_train": True, "dataset": str(broken), key: value})


def test_unsloth_builds_the_lora_adapter(monkeypatch):
    from transformers import AutoModelForCausalLM, LlamaConfig

    from tuneforge.model.adapters import apply_finetuning

    seen = {}

    class FastLanguageModel:
        @staticmethod
        def get_peft_model(model, **kwargs):
            seen.update(kwargs)
            return model

    monkeypatch.setitem(sys.modules, "unsloth", types.SimpleNamespace(FastLanguageModel=FastLanguageModel))
    model = AutoModelForCausalLM.from_config(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                                                         num_hidden_layers=1, num_attention_heads=2))
    apply_finetuning(model, _cfg(use_unsloth=True, lora_rank=4, lora_dropout=0.1, cutoff_len=256), is_trainable=True)
    assert seen["target_modules"] == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert (seen["r"], seen["lora_alpha"], seen["lora_dropout"], seen["max_seq_length"]) == (4, 8, 0.1, 256)
    assert seen["use_gradient_checkpointing"] == "unsloth"


def test_v1_kernels_are_refused_for_training_without_an_npu_and_left_out_of_inference(caplog):
    from tuneforge.config import make_config
    from tuneforge.model.boosters import check_v1_kernels

    args = make_config({"model_name_or_path": "x", "use_v1_kernels": True}).model
    with pytest.raises(ConfigError, match=r"use_v1_kernels: LLaMA-Factory's v1 kernels are Ascend NPU fused "
                                          r"operators .*tuneforge trains on CPU or CUDA \(cpu here\), not on an NPU"):
        check_v1_kernels(args, "cpu", is_trainable=True)
    with caplog.at_level("INFO", logger="tuneforge.model.boosters"):
        check_v1_kernels(args, "cpu", is_trainable=False)
    assert "applies its v1 kernels to training only" in caplog.text
    check_v1_kernels(make_config({"model_name_or_path": "x"}).model, "cpu", is_trainable=True)  # off: nothing
