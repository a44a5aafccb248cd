"""Muon (use_muon) and Adam-mini (use_adam_mini): which weights each optimizer part updates, that the update
is Muon's / Adam-mini's, checkpoints of their state, short runs whose loss falls, and refused combinations."""

import json
import shutil

import pytest
import torch
from adam_mini import Adam_mini
from transformers import AutoModelForCausalLM

from test_train_recipes import run_recipe
from tuneforge.config import make_config
from tuneforge.errors import ConfigError
from tuneforge.model.adapters import apply_finetuning
from tuneforge.testing.tiny_model import tiny_config
from tuneforge.train.optim.muon import MuonWithAdamW, split_muon_parameters
from tuneforge.train.optim.optimizers import create_custom_optimizer

torch.set_num_threads(1)

LAYER_MATRICES = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                  "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def _setup(model_dir, **values):
    cfg = tiny_config(model_name_or_path=str(model_dir), output_dir="unused", learning_rate=1e-2,
                      report_to="none", **values)
    model = apply_finetuning(AutoModelForCausalLM.from_pretrained(str(model_dir)), cfg, is_trainable=True)
    return model, cfg.training_args, create_custom_optimizer(model, cfg.training_args, cfg)


def _backward(model, seed=0):
    ids = torch.randint(3, 200, (2, 12), generator=torch.Generator().manual_seed(seed))
    model(input_ids=ids, labels=ids).loss.backward()


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest(tiny_llama_dir):
    model, _, optimizer = _setup(tiny_llama_dir, finetuning_type="full", use_muon=True, weight_decay=0.1)
    muon_names, adamw_names = split_muon_parameters(model)
    assert muon_names == [f"model.layers.{layer}.{matrix}.weight" for layer in (0, 1) for matrix in LAYER_MATRICES]
    assert adamw_names == ["model.embed_tokens.weight", "model.layers.0.input_layernorm.weight",
                           "model.layers.0.post_attention_layernorm.weight", "model.layers.1.input_layernorm.weight",
                           "model.layers.1.post_attention_layernorm.weight", "model.norm.weight", "lm_head.weight"]
    assert isinstance(optimizer, MuonWithAdamW)
    params = dict(model.named_parameters())
    muon, adamw = optimizer.parts["muon"], optimizer.parts["adamw"]
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    assert [id(p) for p in muon.param_groups[0]["params"]] == [id(params[n]) for n in muon_names]
    assert [id(p) for p in adamw.param_groups[0]["params"]] == [id(params[n]) for n in adamw_names]
    assert muon.param_groups[0]["adjust_lr_fn"] == "match_rms_adamw"
    assert (muon.param_groups[0]["weight_decay"], adamw.param_groups[0]["weight_decay"]) == (0.1, 0.1)
    assert optimizer.param_groups == muon.param_groups + adamw.param_groups


def test_muon_with_lora_orthogonalises_the_adapter_matrices(tiny_llama_dir):
    model, _, _ = _setup(tiny_llama_dir, finetuning_type="lora", lora_target="q_proj", use_muon=True)
    muon_names, adamw_names = split_muon_parameters(model)
    assert muon_names == [f"base_model.model.model.layers.{layer}.self_attn.q_proj.lora_{ab}.default.weight"
                          for layer in (0, 1) for ab in "AB"]
    assert adamw_names == []


def test_a_muon_step_is_torchs_muon_on_matrices_and_adamw_elsewhere(tiny_llama_dir):
    model, _, optimizer = _setup(tiny_llama_dir, finetuning_type="full", use_muon=True)
    twin = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    muon_names, adamw_names = split_muon_parameters(model)
    twin_params = dict(twin.named_parameters())
    reference = [torch.optim.Muon([twin_params[n] for n in muon_names], lr=1e-2, weight_decay=0.0,
                                  adjust_lr_fn="match_rms_adamw"),
                 torch.optim.AdamW([twin_params[n] for n in adamw_names], lr=1e-2, weight_decay=0.0)]
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    for step in range(2):
        for net in (model, twin):
            _backward(net, seed=step)
        optimizer.step()
        optimizer.zero_grad()
        for inner in reference:
            inner.step()
            inner.zero_grad()
    for name, param in model.named_parameters():
        assert not torch.equal(param, before[name]), name
        assert torch.allclose(param, twin_params[name], atol=1e-6), name


def test_muon_follows_the_schedule_and_its_state_round_trips(tiny_llama_dir):
    model, _, optimizer = _setup(tiny_llama_dir, finetuning_type="full", use_muon=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)
    assert [part.param_groups[0]["lr"] for part in optimizer.parts.values()] == [5e-3, 5e-3]
    _backward(model)
    optimizer.step()
    scheduler.step()
    saved = optimizer.state_dict()
    assert set(saved) == {"muon", "adamw"}
    _, _, fresh = _setup(tiny_llama_dir, finetuning_type="full", use_muon=True)
    fresh.load_state_dict(saved)
    restored, trained = (next(iter(opt.parts["muon"].state.values())) for opt in (fresh, optimizer))
    assert torch.equal(restored["momentum_buffer"], trained["momentum_buffer"])
    assert fresh.parts["adamw"].state_dict()["state"][0]["step"] == 1


def test_adam_mini_keeps_one_second_moment_per_head(tiny_llama_dir):
    model, _, optimizer = _setup(tiny_llama_dir, finetuning_type="full", use_adam_mini=True)
    assert isinstance(optimizer, Adam_mini)
    _backward(model)
    optimizer.step()
    params = dict(model.named_parameters())
    # q_proj 64 x 64 with 4 heads, k_proj 32 x 64 with 2 kv heads: one second moment per head;
    # gate_proj 128 x 64: one per output neuron (AdamW would keep 64 x 64, 32 x 64 and 128 x 64 values).
    assert optimizer.state[params["model.layers.0.self_attn.q_proj.weight"]]["vmean"].shape == (4, 1)
    assert optimizer.state[params["model.layers.0.self_attn.k_proj.weight"]]["vmean"].shape == (2, 1)
    assert optimizer.state[params["model.layers.0.mlp.gate_proj.weight"]]["vmean"].shape == (128, 1)


@pytest.mark.parametrize("flag", ["use_muon", "use_adam_mini"])
def test_a_short_run_with_the_optimizer_lowers_the_loss(tiny_llama_dir, tmp_path, flag):
    metrics, trainer = run_recipe("sft", tiny_llama_dir, tmp_path, finetuning_type="full", learning_rate=5e-3,
                                  max_steps=20, **{flag: True})
    inner = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate's wrapper
    assert isinstance(inner, MuonWithAdamW if flag == "use_muon" else Adam_mini)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("values, message", [
    ({"use_muon": True, "use_galore": True, "finetuning_type": "full"},
     "use_muon cannot be combined with use_galore: each builds its own optimizer; choose one."),
    ({"use_muon": True, "use_adam_mini": True}, "use_muon cannot be combined with use_adam_mini"),
    ({"use_adam_mini": True, "use_badam": True, "finetuning_type": "full"},
     "use_adam_mini cannot be combined with use_badam"),
    ({"use_muon": True, "use_apollo": True, "finetuning_type": "full"}, "use_muon cannot be combined with use_apollo"),
    ({"use_muon": True, "loraplus_lr_ratio": 4.0}, "use_muon cannot be combined with loraplus_lr_ratio"),
    ({"use_adam_mini": True, "optim": "adafactor"},
     "use_adam_mini replaces optim (it is 'adafactor', which would be ignored): set optim adamw_torch"),
])
def test_incompatible_optimizer_settings_are_refused(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_config(values)


def _logged_losses(run_dir):
    """step -> logged loss (a resumed run's history starts with the checkpoint's steps)."""
    state = json.loads((run_dir / "trainer_state.json").read_text())
    return {entry["step"]: entry["loss"] for entry in state["log_history"] if "loss" in entry}


@pytest.mark.parametrize("flag", ["use_muon", "use_adam_mini"])
def test_resume_continues_the_same_trajectory(tiny_llama_dir, tmp_path, flag):
    run = dict(finetuning_type="full", learning_rate=5e-3, max_steps=6, save_steps=3, logging_steps=1,
               per_device_train_batch_size=4, **{flag: True})
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_recipe("sft", tiny_llama_dir, straight, **run)
    shutil.copytree(straight / "checkpoint-3", resumed / "checkpoint-3")
    run_recipe("sft", tiny_llama_dir, resumed, **run)  # resumes from checkpoint-3, optimizer state included
    steps_run = [json.loads(line)["step"] for line in open(resumed / "trainer_log.jsonl")]
    assert steps_run == [4, 5, 6]  # it did resume; step 5 and 6 then depend on the restored optimizer state
    expected, log = _logged_losses(straight), _logged_losses(resumed)
    for step in (4, 5, 6):
        assert log[step] == pytest.approx(expected[step], abs=1e-5), step


@pytest.mark.parametrize("key, value, name", [("deepspeed", "ds_z2.json", "DeepSpeed"),
                                              ("fsdp", "full_shard", "FSDP")])
def test_muon_with_sharded_or_flattened_weights_is_refused_before_weights_load(tiny_llama_dir, monkeypatch, key,
                                                                                value, name):
    from tuneforge.train.optim.optimizers import check_optimizer_setup

    cfg = tiny_config(model_name_or_path=str(tiny_llama_dir), finetuning_type="full", use_muon=True,
                      report_to="none", output_dir="unused")
    args = cfg.training_args
    monkeypatch.setattr(args, key, value)
    with pytest.raises(ConfigError, match=rf"use_muon runs without {name}: Muon orthogonalises each whole weight "
                                          r"matrix, and DeepSpeed / FSDP hand the optimizer flattened or sharded "
                                          r"pieces. Remove deepspeed / fsdp or use_muon."):
        check_optimizer_setup(cfg, args)


def test_adam_mini_without_its_package_is_refused_with_the_install_line(tiny_llama_dir, monkeypatch):
    import importlib.util

    from tuneforge.train.optim.optimizers import check_optimizer_setup

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "adam_mini" else real_find_spec(name, *a))
    cfg = tiny_config(model_name_or_path=str(tiny_llama_dir), use_adam_mini=True, report_to="none",
                      output_dir="unused")
    with pytest.raises(ConfigError, match=r"use_adam_mini needs the adam-mini package: pip install "
                                          r"adam-mini==1.1.1"):
        check_optimizer_setup(cfg, cfg.training_args)
