"""LLaMA-Factory training switches: logging_dir, save_safetensors, disable_shuffling, early_stopping_steps,
include_effective_tokens_per_second, compute_accuracy, print_param_status, train_from_scratch,
use_reentrant_gc, upcast_layernorm, upcast_lmhead_output and low_cpu_mem_usage. Each test checks the
switch's effect, not only that the run accepts it."""

import logging
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import transformers.modeling_utils
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerControl, TrainerState
from transformers.integrations import TensorBoardCallback

from test_train_recipes import run_recipe
from tuneforge.errors import ConfigError
from tuneforge.model.loader import load_model
from tuneforge.testing.tiny_model import tiny_config
from tuneforge.train.args import run_training_arguments
from tuneforge.train.lf_switches import ComputeAccuracy, apply_switches
from tuneforge.train.trainer import TuneforgeTrainer


@pytest.fixture(scope="module")
def model_dir(tiny_llama_dir):
    return tiny_llama_dir


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return AutoTokenizer.from_pretrained(str(model_dir))


@pytest.fixture(scope="module")
def tiny_model(model_dir):
    return AutoModelForCausalLM.from_pretrained(str(model_dir))


def _cfg(model_dir, tmp_path, **values):
    settings = dict(model_name_or_path=str(model_dir), output_dir=str(tmp_path / "out"), do_train=True,
                    dataset="toy_rows", report_to="none")
    settings.update(values)
    return tiny_config(**settings)


# --- refused before anything loads ---------------------------------------------------------------

@pytest.mark.parametrize("values, expected", [
    ({"save_safetensors": False}, "save_safetensors: false is not possible: transformers 5 always writes"),
    ({"early_stopping_steps": 2}, "early_stopping_steps needs evaluations during training: set eval_strategy"),
    ({"early_stopping_steps": 2, "eval_strategy": "steps", "val_size": 0.2},
     "early_stopping_steps needs the metric to watch: set metric_for_best_model"),
    ({"disable_shuffling": True, "group_by_length": True}, "disable_shuffling and group_by_length are both set"),
    ({"compute_accuracy": True, "stage": "dpo"}, "compute_accuracy is reported by stage sft only (stage dpo"),
    ({"disable_shuffling": True, "stage": "ppo", "reward_model": "rm"},
     "disable_shuffling: stage ppo runs its own rollout loop"),
])
def test_unusable_combinations_are_config_errors(model_dir, tmp_path, values, expected):
    with pytest.raises(ConfigError) as error:
        _cfg(model_dir, tmp_path, **values)
    assert expected in str(error.value)


# --- trainer-side switches -----------------------------------------------------------------------

def test_disable_shuffling_trains_rows_in_dataset_order(model_dir, tiny_model, tmp_path):
    rows = [{"input_ids": [i + 1]} for i in range(32)]
    shuffled = TuneforgeTrainer(model=tiny_model, args=run_training_arguments(_cfg(model_dir, tmp_path)),
                                train_dataset=rows)
    assert list(shuffled._get_train_sampler()) != list(range(32))
    args = run_training_arguments(_cfg(model_dir, tmp_path, disable_shuffling=True))
    assert args.train_sampling_strategy == "sequential"
    ordered = TuneforgeTrainer(model=tiny_model, args=args, train_dataset=rows)
    assert list(ordered._get_train_sampler()) == list(range(32))


class _FakeSummaryWriter:
    """Stands in for tensorboard's SummaryWriter (not installed here): records the folder it was given."""

    folders = []

    def __init__(self, log_dir=None):
        self.folders.append(log_dir)

    def add_text(self, *args, **kwargs):
        pass


@pytest.mark.parametrize("logging_dir", ["tb_logs", None])
def test_logging_dir_is_where_the_tensorboard_callback_writes(model_dir, tiny_model, tmp_path, monkeypatch,
                                                              logging_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    callback = TensorBoardCallback.__new__(TensorBoardCallback)  # __init__ would import tensorboard
    callback._SummaryWriter, callback.tb_writer, callback.logging_dir = _FakeSummaryWriter, None, None
    cfg = _cfg(model_dir, tmp_path, logging_dir=logging_dir)
    args = run_training_arguments(cfg)
    trainer = TuneforgeTrainer(model=tiny_model, args=args, callbacks=[callback])
    apply_switches(trainer, cfg.train, cfg.method)
    _FakeSummaryWriter.folders = []
    callback.on_train_begin(args, TrainerState(), TrainerControl())
    (folder,) = _FakeSummaryWriter.folders
    if logging_dir:
        assert folder == str(tmp_path / "tb_logs")
    else:  # transformers' own default: a dated folder under output_dir/runs
        assert os.path.dirname(folder) == os.path.join(str(tmp_path / "out"), "runs")


def test_compute_accuracy_is_lf_token_accuracy_on_a_known_case():
    # Row 1: predictions at 0..2 are scored against labels 1..3; label 1 is masked -> 2 of 2 right.
    # Row 2: 1 of 3 right. Mean over rows = (1 + 1/3) / 2.
    predictions = np.array([[5, 6, 7, 0], [1, 2, 3, 0]])
    labels = np.array([[-100, -100, 6, 7], [-100, 1, 9, 9]])
    metric = ComputeAccuracy()
    assert metric(SimpleNamespace(predictions=predictions, label_ids=labels)) == {"accuracy": pytest.approx(2 / 3)}
    # batch_eval_metrics: scores gather until compute_result
    assert metric(SimpleNamespace(predictions=predictions[:1], label_ids=labels[:1]), compute_result=False) is None
    assert metric(SimpleNamespace(predictions=predictions[1:], label_ids=labels[1:])) == {
        "accuracy": pytest.approx(2 / 3)}


def test_early_stopping_accuracy_and_effective_tokens_in_one_run(model_dir, tmp_path):
    # Eval rows are training rows, so eval_loss falls every step; with greater_is_better the second
    # evaluation is "no improvement" and patience 1 stops the run at step 2 of 20.
    metrics, trainer = run_recipe(
        "sft", model_dir, tmp_path, with_eval=True, finetuning_type="full", learning_rate=5e-3, max_steps=20,
        logging_steps=1, eval_strategy="steps", eval_steps=1, val_size=0.25, metric_for_best_model="eval_loss",
        greater_is_better=True, early_stopping_steps=1, compute_accuracy=True,
        include_effective_tokens_per_second=True, disable_tqdm=True)
    assert trainer.state.global_step == 2
    dataset = trainer.train_dataset
    tokens = sum(len(ids) for ids in dataset["input_ids"])
    assert metrics["effective_tokens_per_sec"] == pytest.approx(
        tokens * metrics["epoch"] / metrics["train_runtime"])

    # eval_accuracy of the last evaluation = the trained model's greedy next-token accuracy on the eval rows
    last_eval = [entry for entry in trainer.state.log_history if "eval_accuracy" in entry][-1]
    model = trainer.model.eval()
    expected = []
    for row in trainer.eval_dataset:
        with torch.no_grad():
            predicted = model(torch.tensor([row["input_ids"]])).logits.argmax(-1)[0, :-1]
        labels = torch.tensor(row["labels"])[1:]
        mask = labels != -100
        expected.append((predicted[mask] == labels[mask]).float().mean().item())
    assert last_eval["eval_accuracy"] == pytest.approx(float(np.mean(expected)), abs=1e-6)


# --- model-side switches -------------------------------------------------------------------------

def test_train_from_scratch_prints_param_status_and_ignores_the_checkpoint(model_dir, tokenizer, tmp_path,
                                                                           capsys, caplog):
    with caplog.at_level(logging.WARNING, logger="tuneforge.model.precision_patches"):
        model = load_model(_cfg(model_dir, tmp_path, finetuning_type="full", train_from_scratch=True,
                                print_param_status=True, low_cpu_mem_usage=False), tokenizer)
    saved = load_file(str(model_dir / "model.safetensors"))
    weights = dict(model.named_parameters())
    assert not torch.equal(weights["model.layers.0.self_attn.q_proj.weight"],
                           saved["model.layers.0.self_attn.q_proj.weight"])
    assert weights["model.layers.0.self_attn.q_proj.weight"].shape == saved["model.layers.0.self_attn.q_proj.weight"].shape
    out = capsys.readouterr().out
    assert ("name: model.layers.0.self_attn.q_proj.weight, dtype: torch.float32, device: cpu, trainable: True"
            in out)
    assert out.count("name: ") == len(weights)
    assert "low_cpu_mem_usage: false has no effect: transformers 5 always loads" in caplog.text


@pytest.mark.parametrize("values, reentrant", [({}, False), ({"use_reentrant_gc": True}, True),
                                               ({"use_reentrant_gc": False}, False)])
def test_use_reentrant_gc_reaches_torch_checkpoint(model_dir, tokenizer, tmp_path, monkeypatch, values, reentrant):
    seen = []
    real_checkpoint = transformers.modeling_utils.checkpoint

    def spy(function, *args, **kwargs):
        seen.append(kwargs.get("use_reentrant"))
        return real_checkpoint(function, *args, **kwargs)

    monkeypatch.setattr(transformers.modeling_utils, "checkpoint", spy)
    model = load_model(_cfg(model_dir, tmp_path, **values), tokenizer)  # LoRA: frozen embeddings
    ids = torch.tensor([[5, 6, 7, 8]])
    model(input_ids=ids, labels=ids).loss.backward()
    assert seen and set(seen) == {reentrant}
    lora_grads = [p.grad for name, p in model.named_parameters() if "lora_B" in name]  # A starts random, B at zero: only B gets a gradient at step 0
    assert lora_grads and all(grad is not None and grad.abs().sum() > 0 for grad in lora_grads)


@pytest.mark.parametrize("upcast", [False, True])
def test_upcast_layernorm_and_lmhead_output_on_a_bf16_model(model_dir, tokenizer, tmp_path, upcast):
    model = load_model(_cfg(model_dir, tmp_path, bf16=True, upcast_layernorm=upcast, upcast_lmhead_output=upcast),
                       tokenizer)
    norms = {name: p.dtype for name, p in model.named_parameters() if p.ndim == 1 and "norm" in name}
    assert norms and set(norms.values()) == {torch.float32 if upcast else torch.bfloat16}
    q_proj = next(p for name, p in model.named_parameters() if name.endswith("q_proj.base_layer.weight"))
    assert q_proj.dtype == torch.bfloat16  # everything else stays in the compute dtype
    # bf16 training runs under autocast (the Trainer's AMP), which fp32 norm weights rely on, as in LF
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(input_ids=torch.tensor([[5, 6, 7]])).logits
    assert logits.dtype == (torch.float32 if upcast else torch.bfloat16)
