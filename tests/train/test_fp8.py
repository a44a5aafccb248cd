"""FP8: the decision (refused without a CUDA GPU of compute capability >= 8.9, backend choice, FSDP all-gather
rules) with the machine faked, the accelerate recipe the trainer passes, and the CPU refusal before weights load."""

from pathlib import Path

import pytest
import torch

from tuneforge.errors import ConfigError
from tuneforge.testing.tiny_model import tiny_config
from tuneforge.train.fp8 import Fp8Plan, GpuFacts, keep_in_fp8, plan_fp8
from tuneforge.train.trainer import TuneforgeTrainer

H100 = GpuFacts(cuda=True, capability=(9, 0), name="NVIDIA H100")
A100 = GpuFacts(cuda=True, capability=(8, 0), name="NVIDIA A100-SXM4-80GB")
L4 = GpuFacts(cuda=True, capability=(8, 9), name="NVIDIA L4")
CPU = GpuFacts(cuda=False, capability=None, name=None)
DEMO_DATA = Path(__file__).resolve().parents[2] / "src" / "tuneforge" / "demo" / "data"
ALL = {"torchao", "transformer_engine", "msamp"}


def _train(**values):
    return tiny_config(model_name_or_path="x", **values).train


def test_fp8_off_plans_nothing_anywhere():
    assert plan_fp8(_train(), CPU, installed=set()) is None


def test_no_cuda_gpu_is_refused_naming_the_requirement():
    with pytest.raises(ConfigError, match=r"fp8: FP8 training needs an NVIDIA GPU of CUDA compute capability >= "
                                          r"8\.9 .*this machine has no CUDA GPU\. Remove fp8"):
        plan_fp8(_train(fp8=True), CPU, installed=ALL)


def test_an_older_gpu_is_refused_with_its_capability():
    with pytest.raises(ConfigError, match=r"needs CUDA compute capability >= 8\.9 .*NVIDIA A100-SXM4-80GB has 8\.0"):
        plan_fp8(_train(fp8=True), A100, installed=ALL)


@pytest.mark.parametrize("requested, installed, expected", [
    ("auto", ALL, "torchao"), ("auto", {"transformer_engine"}, "te"), ("te", ALL, "te"), ("msamp", ALL, "msamp"),
])
def test_backend_choice_on_capable_gpus(requested, installed, expected):
    for gpu in (H100, L4):
        assert plan_fp8(_train(fp8=True, fp8_backend=requested), gpu, installed=installed) == Fp8Plan(expected, False)


@pytest.mark.parametrize("values, installed, message", [
    (dict(fp8_backend="auto"), set(), "fp8_backend: auto found no FP8 backend; install torchao"),
    (dict(fp8_backend="torchao"), {"transformer_engine"}, "fp8_backend: torchao needs the torchao package"),
    (dict(fp8_backend="te", fp8_enable_fsdp_float8_all_gather=True, fsdp="full_shard"), ALL,
     "fp8_enable_fsdp_float8_all_gather is a torchao feature; fp8_backend is 'te'"),
    (dict(fp8_backend="torchao", fp8_enable_fsdp_float8_all_gather=True), ALL, "this run uses no FSDP"),
])
def test_setups_that_cannot_run_fp8_are_named(values, installed, message):
    with pytest.raises(ConfigError, match=message):
        plan_fp8(_train(fp8=True, **values), H100, installed=installed)


def test_fsdp_all_gather_with_torchao_and_fsdp_is_planned():
    train = _train(fp8=True, fp8_backend="torchao", fp8_enable_fsdp_float8_all_gather=True, fsdp="full_shard")
    assert plan_fp8(train, H100, installed=ALL) == Fp8Plan("torchao", True)


def test_all_gather_without_fp8_is_refused():
    with pytest.raises(ConfigError, match="fp8_enable_fsdp_float8_all_gather needs fp8: true"):
        plan_fp8(_train(fp8_enable_fsdp_float8_all_gather=True), H100, installed=ALL)


def test_the_trainer_asks_accelerate_for_the_fp8_recipe(monkeypatch):
    """The accelerator arguments: mixed_precision fp8 plus the backend's recipe handler next to DDP's."""
    import tuneforge.train.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "accelerator_fp8_kwargs", lambda plan: ("recipe", plan.backend))
    trainer = TuneforgeTrainer.__new__(TuneforgeTrainer)
    trainer.fp8 = Fp8Plan("te", False)
    monkeypatch.setattr(trainer_module.Seq2SeqTrainer, "_build_accelerator_args",
                        lambda self, **kwargs: {"mixed_precision": "bf16", "kwargs_handlers": ["ddp"]})
    args = trainer._build_accelerator_args()
    assert args == {"mixed_precision": "fp8", "kwargs_handlers": ["ddp", ("recipe", "te")]}
    trainer.fp8 = None
    assert trainer._build_accelerator_args() == {"mixed_precision": "bf16", "kwargs_handlers": ["ddp"]}


def test_only_inner_linear_layers_with_dims_divisible_by_16_go_fp8():
    assert keep_in_fp8(torch.nn.Linear(64, 128), "model.layers.0.mlp.up_proj")
    assert not keep_in_fp8(torch.nn.Linear(64, 100), "model.layers.0.mlp.up_proj")
    assert not keep_in_fp8(torch.nn.Linear(64, 128), "lm_head")
    assert not keep_in_fp8(torch.nn.Embedding(10, 16), "model.embed_tokens")


def test_fp8_on_this_cpu_is_refused_before_the_weights_load(tiny_llama_dir, tmp_path, monkeypatch):
    from tuneforge.train import run_train
    import tuneforge.model.loader as loader

    monkeypatch.setattr(loader, "load_model", lambda *a, **k: pytest.fail("weights loaded"))
    values = dict(model_name_or_path=str(tiny_llama_dir), output_dir=str(tmp_path), stage="sft", do_train=True,
                  dataset="demo_alpaca", dataset_dir=str(DEMO_DATA), template="default", fp8=True, max_steps=1)
    with pytest.raises(ConfigError, match="CUDA compute capability >= 8.9"):
        run_train(values)
