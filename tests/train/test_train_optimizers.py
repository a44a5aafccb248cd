"""Optimizers: GaLore / APOLLO low-rank state, BAdam block switching, LoRA+ learning rates, 8-bit AdamW
through the real trainer, resuming with these optimizers, and the combinations refused up front."""

import json
import os
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers.trainer_pt_utils import LayerWiseDummyOptimizer

from test_train_recipes import run_recipe
from tuneforge.config import make_config
from tuneforge.errors import ConfigError
from tuneforge.model.adapters import apply_finetuning
from tuneforge.testing.tiny_model import tiny_config
from tuneforge.train.optim.optimizers import create_custom_optimizer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_dir(tiny_llama_dir):
    """Tiny llama: hidden 64, 2 layers, MLP 128, 4 query heads and 2 kv heads of 16 (k/v_proj: 32 x 64)."""
    return tiny_llama_dir


def _setup(model_dir, **values):
    """(model with the finetuning method applied, training args, config, optimizer from optimizers.py)."""
    cfg = tiny_config(model_name_or_path=str(model_dir), output_dir="unused", learning_rate=1e-2,
                      report_to="none", **values)
    model = apply_finetuning(AutoModelForCausalLM.from_pretrained(str(model_dir)), cfg, is_trainable=True)
    return model, cfg.training_args, cfg, create_custom_optimizer(model, cfg.training_args, cfg)


def _backward(model, seed=0):
    ids = torch.randint(3, 200, (2, 12), generator=torch.Generator().manual_seed(seed))
    model(input_ids=ids, labels=ids).loss.backward()


def _train_steps(model, optimizer, steps):
    for step in range(steps):
        _backward(model, seed=step)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def _snapshot(model):
    return {name: param.detach().clone() for name, param in model.named_parameters()}


def _changed(before, model):
    return {name for name, param in model.named_parameters() if not torch.equal(before[name], param)}


def _low_rank_shape(shape, rank):
    """GaLore's std projection keeps the larger side: rows x r when rows >= cols, else r x cols."""
    rows, cols = shape
    return (rows, rank) if rows >= cols else (rank, cols)


# --- GaLore / APOLLO ------------------------------------------------------------------------------------


def test_galore_keeps_low_rank_moments_for_target_weights_only(model_dir):
    model, args, _, optimizer = _setup(model_dir, finetuning_type="full", use_galore=True, galore_rank=4,
                                       galore_target="mlp,q_proj", weight_decay=0.1)
    _train_steps(model, optimizer, 1)
    params = dict(model.named_parameters())
    moments = {name: tuple(optimizer.state[param]["exp_avg"].shape) for name, param in params.items()}
    assert moments["model.layers.0.self_attn.q_proj.weight"] == (64, 4)  # 64 x 64
    assert moments["model.layers.0.mlp.gate_proj.weight"] == (128, 4)  # 128 x 64
    assert moments["model.layers.1.mlp.down_proj.weight"] == (4, 128)  # 64 x 128
    targets = {name for name in params if ".mlp." in name or "q_proj" in name}
    for name, param in params.items():
        expected = _low_rank_shape(param.shape, 4) if name in targets else tuple(param.shape)
        assert moments[name] == expected, name
    rank_group = next(group for group in optimizer.param_groups if "rank" in group)
    assert (rank_group["rank"], rank_group["update_proj_gap"], rank_group["scale"], rank_group["proj_type"],
            rank_group["weight_decay"]) == (4, 200, 2.0, "std", 0.1)
    norm_group = next(g for g in optimizer.param_groups if any(p is params["model.norm.weight"] for p in g["params"]))
    assert norm_group["weight_decay"] == 0.0


def test_galore_layerwise_steps_each_weight_inside_backward(model_dir):
    model, _, _, optimizer = _setup(model_dir, finetuning_type="full", use_galore=True, galore_rank=4,
                                    galore_layerwise=True)
    assert isinstance(optimizer, LayerWiseDummyOptimizer)
    before = _snapshot(model)
    _backward(model)  # no optimizer.step(): the per-parameter hooks update and free the gradients
    assert _changed(before, model) == set(before)
    assert all(param.grad is None for param in model.parameters())
    q_proj = dict(model.named_parameters())["model.layers.0.self_attn.q_proj.weight"]
    assert optimizer.optimizer_dict[q_proj].state[q_proj]["exp_avg"].shape == (64, 4)


def test_galore_target_must_name_a_linear_layer(model_dir):
    with pytest.raises(ConfigError, match=r"galore_target: 'qproj' matches no trainable linear layer; "
                                          r"choose from: all, down_proj, gate_proj, k_proj, o_proj, q_proj, "
                                          r"up_proj, v_proj"):
        _setup(model_dir, finetuning_type="full", use_galore=True, galore_target="qproj")


def test_apollo_low_rank_state_and_scale_front_reach_the_optimizer(model_dir):
    model, _, _, optimizer = _setup(model_dir, finetuning_type="full", use_apollo=True, apollo_rank=4,
                                    apollo_scale_front=True, optim="adamw_torch")
    before = _snapshot(model)
    _train_steps(model, optimizer, 1)
    assert optimizer.scale_front is True
    params = dict(model.named_parameters())
    assert optimizer.state[params["model.layers.0.mlp.down_proj.weight"]]["exp_avg"].shape == (4, 128)
    assert optimizer.state[params["model.embed_tokens.weight"]]["exp_avg"].shape == params[
        "model.embed_tokens.weight"].shape
    assert _changed(before, model) == set(before)


# --- BAdam ----------------------------------------------------------------------------------------------


def _trainable_layers(model):
    return {name.split(".")[2] for name, param in model.named_parameters() if param.requires_grad}


def test_badam_layer_trains_one_block_and_switches_at_the_interval(model_dir):
    model, _, _, optimizer = _setup(model_dir, finetuning_type="full", use_badam=True, badam_switch_interval=2)
    assert _trainable_layers(model) == {"0"}  # ascending: first layer first

    layer0 = {name for name in _snapshot(model) if name.startswith("model.layers.0.")}
    layer1 = {name for name in _snapshot(model) if name.startswith("model.layers.1.")}
    before = _snapshot(model)
    _train_steps(model, optimizer, 1)
    assert _changed(before, model) == layer0 and _trainable_layers(model) == {"0"}
    _train_steps(model, optimizer, 1)
    assert _changed(before, model) == layer0 and _trainable_layers(model) == {"1"}  # switched after 2 steps

    before = _snapshot(model)
    _train_steps(model, optimizer, 2)
    assert _changed(before, model) == layer1 and _trainable_layers(model) == {"0"}  # wrapped around


def test_badam_switch_modes_and_resumed_position(model_dir, capsys):
    _, _, _, descending = _setup(model_dir, finetuning_type="full", use_badam=True, badam_switch_mode="descending")
    assert descending.active_block == 1
    model, _, _, shuffled = _setup(model_dir, finetuning_type="full", use_badam=True, badam_switch_mode="random",
                                   badam_switch_interval=1)
    seen = [shuffled.active_block]
    for _ in range(3):
        _train_steps(model, shuffled, 1)
        seen.append(shuffled.active_block)
    assert sorted(seen[:2]) == sorted(seen[2:]) == [0, 1]  # each block once per round
    assert capsys.readouterr().out == ""  # badam_verbose 0
    model, _, _, fixed = _setup(model_dir, finetuning_type="full", use_badam=True, badam_switch_mode="fixed",
                                badam_start_block=1, badam_switch_interval=1)
    _train_steps(model, fixed, 2)
    assert _trainable_layers(model) == {"1"}

    settings = dict(finetuning_type="full", use_badam=True, badam_switch_interval=3)
    model, _, _, optimizer = _setup(model_dir, **settings)
    _train_steps(model, optimizer, 4)  # block 1, one step into it
    state = optimizer.state_dict()
    model, _, _, resumed = _setup(model_dir, **settings)  # a resumed run starts from block 0 ...
    resumed.load_state_dict(state)  # ... until the checkpoint's optimizer state says otherwise
    assert (resumed.active_block, resumed.global_step) == (1, 4) and _trainable_layers(model) == {"1"}
    _train_steps(model, resumed, 2)
    assert _trainable_layers(model) == {"0"}  # 3 steps on block 1 in all, as without the resume


def test_badam_ratio_updates_the_given_share_of_each_weight(model_dir):
    model, _, _, optimizer = _setup(model_dir, finetuning_type="full", use_badam=True, badam_mode="ratio",
                                    badam_update_ratio=0.25)
    before = _snapshot(model)
    _train_steps(model, optimizer, 1)
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"):
        changed = (before[name] != dict(model.named_parameters())[name]).sum().item()
        assert changed == before[name].numel() // 4, name
    assert not {"model.embed_tokens.weight", "lm_head.weight"} & _changed(before, model)


# --- LoRA+ ----------------------------------------------------------------------------------------------


def _group_of(optimizer, param):
    return next(group for group in optimizer.param_groups if any(p is param for p in group["params"]))


def test_loraplus_b_matrices_learn_at_ratio_times_lr(model_dir):
    model, _, _, optimizer = _setup(model_dir, finetuning_type="lora", loraplus_lr_ratio=16.0,
                                    lora_target="q_proj,v_proj,embed_tokens", loraplus_lr_embedding=1e-5)
    params = dict(model.named_parameters())
    a = params["base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"]
    b = params["base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight"]
    embedding_b = params["base_model.model.model.embed_tokens.lora_embedding_B.default"]
    assert _group_of(optimizer, a)["lr"] == 1e-2
    assert _group_of(optimizer, b)["lr"] == pytest.approx(16 * 1e-2)
    assert _group_of(optimizer, embedding_b)["lr"] == 1e-5
    grouped = sum(len(group["params"]) for group in optimizer.param_groups)
    assert grouped == sum(1 for p in model.parameters() if p.requires_grad)


# --- through the real trainer ---------------------------------------------------------------------------


def _losses(output_dir):
    return [json.loads(line)["loss"] for line in open(os.path.join(output_dir, "trainer_log.jsonl"))]


def test_adamw_8bit_keeps_uint8_moments(model_dir, tmp_path):
    _, trainer = run_recipe("sft", model_dir, tmp_path, finetuning_type="full", optim="adamw_8bit",
                            learning_rate=5e-3, max_steps=2, save_steps=100)
    q_proj = dict(trainer.model.named_parameters())["model.layers.0.self_attn.q_proj.weight"]
    state = trainer.optimizer.state[q_proj]
    assert state["state1"].dtype == torch.uint8 and state["state2"].dtype == torch.uint8
    assert state["state1"].shape == q_proj.shape


@pytest.mark.parametrize("values", [
    {"use_galore": True, "galore_rank": 8, "galore_layerwise": True, "galore_scale": 1.0, "learning_rate": 1e-2},
    {"use_badam": True, "badam_mode": "ratio", "badam_update_ratio": 0.5, "learning_rate": 1e-2},
], ids=["galore_layerwise", "badam_ratio"])
def test_loss_falls_through_the_trainer(model_dir, tmp_path, values):
    """(GaLore and layer-wise BAdam train through the trainer in the resume test below; Adafactor in
    test_train_options.py.)"""
    run_recipe("sft", model_dir, tmp_path, finetuning_type="full", max_steps=16, save_steps=100, **values)
    records = [json.loads(line) for line in open(os.path.join(tmp_path, "trainer_log.jsonl"))]
    assert records[-1]["loss"] < 0.6 * records[0]["loss"], records
    assert records[-1]["lr"] < 0.5 * records[0]["lr"]  # the linear schedule reaches every (per-weight) optimizer


# --- refused up front -----------------------------------------------------------------------------------


def _problems(values):
    with pytest.raises(ConfigError) as error:
        make_config(values)
    return error.value.problems


@pytest.mark.parametrize("values, problem", [
    ({"finetuning_type": "lora", "use_badam": True},
     "use_badam cannot be combined with LoRA; set finetuning_type full or freeze."),
    ({"finetuning_type": "full", "use_galore": True, "use_apollo": True},
     "use_galore and use_apollo are both set; choose one optimizer."),
    ({"finetuning_type": "full", "use_galore": True, "galore_layerwise": True, "gradient_accumulation_steps": 4},
     "galore_layerwise updates each weight as soon as its gradient is ready, so it cannot accumulate gradients: "
     "set gradient_accumulation_steps 1 (it is 4) or galore_layerwise false."),
    ({"finetuning_type": "full", "use_galore": True, "optim": "sgd"},
     "use_galore works with optim adamw_torch, adamw_torch_fused, adamw_bnb_8bit, adamw_8bit, paged_adamw_8bit, "
     "adafactor; optim is 'sgd'."),
    ({"finetuning_type": "full", "use_apollo": True, "optim": "adafactor"},
     "use_apollo works with optim adamw_torch (or adamw_torch_fused); optim is 'adafactor'."),
    ({"finetuning_type": "full", "use_badam": True, "badam_mode": "ratio", "badam_update_ratio": 0.0},
     "badam_update_ratio: 0.0 must be in (0, 1] (the share of each weight updated)."),
    ({"finetuning_type": "freeze", "loraplus_lr_ratio": 16},
     "loraplus_lr_ratio only works with finetuning_type lora (it is 'freeze')."),
    ({"loraplus_lr_ratio": -1}, "loraplus_lr_ratio: -1 must be positive (LoRA+ suggests 2 to 16)."),
])
def test_incompatible_choices_are_refused_with_the_fix(values, problem):
    assert _problems(values) == [problem]


def test_badam_start_block_beyond_the_model_is_refused(model_dir):
    with pytest.raises(ConfigError, match=r"badam_start_block: 5 is out of range; the model has 2 trainable "
                                          r"blocks \(0 to 1\)"):
        _setup(model_dir, finetuning_type="full", use_badam=True, badam_start_block=5)


def test_distributed_layerwise_is_refused_before_weights_load(model_dir, monkeypatch):
    from tuneforge.train.optim.optimizers import check_optimizer_setup

    cfg = tiny_config(model_name_or_path=str(model_dir), finetuning_type="full", use_galore=True,
                      galore_layerwise=True, report_to="none", output_dir="unused")
    args = cfg.training_args
    monkeypatch.setattr(type(args), "world_size", property(lambda self: 2))
    with pytest.raises(ConfigError, match=r"galore_layerwise runs on a single device only \(this launch has 2 "
                                          r"processes\); set galore_layerwise false"):
        check_optimizer_setup(cfg, args)


@pytest.mark.parametrize("values", [
    {"use_galore": True, "galore_rank": 8, "galore_update_interval": 2},
    {"use_galore": True, "galore_rank": 8, "galore_layerwise": True, "lr_scheduler_type": "linear"},
    {"use_badam": True, "badam_switch_interval": 2},  # checkpoint-3 is one step into the second block
], ids=["galore", "galore_layerwise", "badam"])
def test_resume_continues_the_same_trajectory(model_dir, tmp_path, values):
    run = dict(finetuning_type="full", learning_rate=1e-2, max_steps=6, save_steps=3, logging_steps=1,
               per_device_train_batch_size=4, **values)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_recipe("sft", model_dir, straight, **run)
    shutil.copytree(straight / "checkpoint-3", resumed / "checkpoint-3")
    run_recipe("sft", model_dir, resumed, **run)  # resumes from checkpoint-3, optimizer state included
    expected = dict(enumerate(_losses(straight), start=1))
    assert expected[6] < 0.8 * expected[1], expected
    log = dict(enumerate(_losses(resumed), start=4))
    for step in (4, 5, 6):
        assert log[step] == pytest.approx(expected[step], abs=1e-5), step


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_galore_8bit_without_cuda_is_refused_before_weights_load(model_dir):
    from tuneforge.train.optim.optimizers import check_optimizer_setup

    cfg = tiny_config(model_name_or_path=str(model_dir), finetuning_type="full", use_galore=True,
                      optim="adamw_8bit", report_to="none", output_dir="unused", use_cpu=True)
    with pytest.raises(ConfigError, match=r"use_galore with optim adamw_8bit needs a CUDA GPU \(galore-torch's "
                                          r"8-bit AdamW calls torch.cuda.synchronize\(\) at every step\); on cpu "
                                          r"use optim adamw_torch or adafactor"):
        check_optimizer_setup(cfg, cfg.training_args)
