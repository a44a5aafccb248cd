"""Training options: gradient accumulation equivalence, schedulers, optimizers, loggers, length grouping,
and the errors raised before any data or weights load."""

import importlib.util
import json
import os

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from test_train_recipes import DEMO_DATA, run_recipe
from tuneforge.errors import ConfigError
from tuneforge.testing.tiny_model import tiny_config
from tuneforge.train import run_train
from tuneforge.train.args import run_training_arguments
from tuneforge.train.trainer import SeededLengthGroupedSampler, TuneforgeTrainer, prepare_run


def _cfg(model_dir, tmp_path, **values):
    settings = dict(model_name_or_path=str(model_dir), output_dir=str(tmp_path / "out"), do_train=True,
                    dataset="toy_rows", report_to="none")
    settings.update(values)
    return tiny_config(**settings)


def _losses(output_dir):
    return [json.loads(line)["loss"] for line in open(os.path.join(output_dir, "trainer_log.jsonl"))]


def test_gradient_accumulation_1x8_matches_8x1(tiny_llama_dir, tmp_path):
    common = dict(finetuning_type="full", learning_rate=5e-3, max_steps=3, logging_steps=1, save_steps=100)
    run_recipe("sft", tiny_llama_dir, tmp_path / "batch8", per_device_train_batch_size=8,
               gradient_accumulation_steps=1, **common)
    run_recipe("sft", tiny_llama_dir, tmp_path / "accum8", per_device_train_batch_size=1,
               gradient_accumulation_steps=8, **common)
    assert _losses(tmp_path / "batch8") == pytest.approx(_losses(tmp_path / "accum8"), rel=1e-4)
    batch8 = load_file(str(tmp_path / "batch8" / "model.safetensors"))
    accum8 = load_file(str(tmp_path / "accum8" / "model.safetensors"))
    for name in batch8:
        assert torch.allclose(batch8[name], accum8[name], atol=1e-4), name


SCHEDULERS = {
    "linear": {}, "cosine": {}, "cosine_with_restarts": {}, "polynomial": {}, "constant": {},
    "constant_with_warmup": {}, "inverse_sqrt": {},
    "reduce_lr_on_plateau": {"eval_strategy": "steps", "eval_steps": 5, "val_size": 0.25},
    "cosine_with_min_lr": {"lr_scheduler_kwargs": {"min_lr_rate": 0.1}},
    "warmup_stable_decay": {"lr_scheduler_kwargs": {"num_decay_steps": 4}},
}


def test_every_lr_scheduler_builds_and_warms_up(tiny_llama_dir, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    for name, extra in SCHEDULERS.items():
        cfg = _cfg(tiny_llama_dir, tmp_path, lr_scheduler_type=name, learning_rate=1.0, warmup_steps=2, **extra)
        trainer = TuneforgeTrainer(model=model, args=run_training_arguments(cfg), eval_dataset=[{"input_ids": [1]}])
        trainer.create_optimizer_and_scheduler(num_training_steps=10)
        rates = []
        for _ in range(10):
            rates.append(trainer.optimizer.param_groups[0]["lr"])
            trainer.optimizer.step()
            if name == "reduce_lr_on_plateau":
                trainer.lr_scheduler.step(1.0)
            else:
                trainer.lr_scheduler.step()
        if name in ("constant", "reduce_lr_on_plateau"):  # schedules without warmup
            assert rates == [1.0] * 10, name
        else:
            assert rates[:3] == pytest.approx([0.0, 0.5, 1.0]), name
        if name == "cosine_with_min_lr":
            assert min(rates[2:]) >= 0.1 - 1e-6
        if name == "linear":
            assert rates[-1] == pytest.approx(0.125)


@pytest.mark.parametrize("name, hint", [("cosine_with_min_lr", "{min_lr_rate: 0.1}"),
                                        ("warmup_stable_decay", "{num_decay_steps: 100}")])
def test_scheduler_without_its_arguments(tiny_llama_dir, tmp_path, name, hint):
    with pytest.raises(ConfigError, match=f"lr_scheduler_type: {name} needs lr_scheduler_kwargs .*e.g. "
                                          f"lr_scheduler_kwargs: {hint}"):
        run_training_arguments(_cfg(tiny_llama_dir, tmp_path, lr_scheduler_type=name))


def test_adafactor_trains(tiny_llama_dir, tmp_path):
    run_recipe("sft", tiny_llama_dir, tmp_path, finetuning_type="full", optim="adafactor", learning_rate=1e-2,
               max_steps=10, logging_steps=5, save_steps=100)
    losses = _losses(tmp_path)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("logger_name, package", [("tensorboard", "tensorboard"), ("wandb", "wandb"),
                                                  ("mlflow", "mlflow"), ("swanlab", "swanlab")])
def test_report_to_needs_the_logger_installed(tiny_llama_dir, tmp_path, logger_name, package):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    with pytest.raises(ConfigError, match=f"report_to: {logger_name} is not installed \\(pip install "
                                          f"'tuneforge\\[loggers\\]', or pip install {package}\\)"):
        run_training_arguments(_cfg(tiny_llama_dir, tmp_path, report_to=logger_name))


def test_report_to_none_and_cpu_settings(tiny_llama_dir, tmp_path):
    args = run_training_arguments(_cfg(tiny_llama_dir, tmp_path, report_to="none", bf16=True))
    assert args.report_to == [] and args.use_cpu and args.bf16
    assert args.remove_unused_columns is False and args.label_names == ["labels"]


def test_group_by_length_uses_a_resumable_seeded_sampler(tiny_llama_dir, tmp_path):
    from tuneforge.testing.tiny_model import tiny_dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    dataset = tiny_dataset(tokenizer).train_dataset
    cfg = _cfg(tiny_llama_dir, tmp_path, group_by_length=True, per_device_train_batch_size=2, seed=7)
    trainer = TuneforgeTrainer(model=AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)),
                               args=run_training_arguments(cfg), train_dataset=dataset)
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, SeededLengthGroupedSampler)
    first = list(sampler)
    assert sorted(first) == list(range(len(dataset)))
    sampler.set_epoch(1)
    second = list(sampler)
    sampler.set_epoch(0)
    assert list(sampler) == first  # the same epoch always gives the same order (resume replays it)
    again = SeededLengthGroupedSampler(2, [len(ids) for ids in dataset["input_ids"]], seed=7)
    again.set_epoch(1)
    assert list(again) == second


@pytest.mark.parametrize("stage, metric", [("sft", "eval_loss"), ("pt", "eval_perplexity")])
def test_evaluation_during_and_after_training(tiny_llama_dir, tmp_path, stage, metric):
    metrics, _ = run_recipe(stage, tiny_llama_dir, tmp_path, with_eval=True, do_eval=True, val_size=0.25,
                            eval_strategy="steps", eval_steps=2, finetuning_type="lora", learning_rate=1e-2,
                            max_steps=4, logging_steps=2, save_steps=100, plot_loss=True)
    records = [json.loads(line) for line in open(tmp_path / "trainer_log.jsonl")]
    assert [record["step"] for record in records if "eval_loss" in record] == [2, 4, 4]  # + the final evaluate
    assert metric in metrics and metric in json.load(open(tmp_path / "all_results.json"))
    assert (tmp_path / "training_eval_loss.png").is_file()


def test_evaluation_only_run_keeps_the_training_runs_logs_and_config(tiny_llama_dir, tmp_path):
    common = dict(finetuning_type="lora", learning_rate=1e-2, logging_steps=2, save_steps=100, with_eval=True)
    run_recipe("sft", tiny_llama_dir, tmp_path, max_steps=4, **common)
    trained_log = (tmp_path / "trainer_log.jsonl").read_text()
    run_yaml = (tmp_path / "run.yaml").read_text()
    metrics, _ = run_recipe("sft", tiny_llama_dir, tmp_path, do_train=False, do_eval=True, val_size=0.25,
                            adapter_name_or_path=str(tmp_path), **common)
    assert "eval_loss" in metrics
    log = (tmp_path / "trainer_log.jsonl").read_text()
    assert log.startswith(trained_log) and "eval_loss" in log[len(trained_log):]
    assert (tmp_path / "run.yaml").read_text() == run_yaml


def test_bf16_mixed_precision_and_pure_bf16_train_on_cpu(tiny_llama_dir, tmp_path):
    common = dict(finetuning_type="full", learning_rate=5e-3, max_steps=3, logging_steps=1, save_steps=100)
    run_recipe("sft", tiny_llama_dir, tmp_path / "bf16", bf16=True, **common)
    run_recipe("sft", tiny_llama_dir, tmp_path / "pure", pure_bf16=True, **common)
    for name, dtype in (("bf16", torch.float32), ("pure", torch.bfloat16)):  # fp32 master weights vs none
        weights = load_file(str(tmp_path / name / "model.safetensors"))
        assert {tensor.dtype for tensor in weights.values()} == {dtype}, name
        losses = _losses(tmp_path / name)
        assert all(0 < loss < 20 for loss in losses), losses


def test_fp16_on_cpu_fails_before_anything_loads(tiny_llama_dir, tmp_path):
    with pytest.raises(ConfigError, match="fp16: true on a CPU"):
        prepare_run(_cfg(tiny_llama_dir, tmp_path, fp16=True))


def test_nothing_to_do(tiny_llama_dir, tmp_path):
    with pytest.raises(ConfigError, match="nothing to do: set do_train: true"):
        prepare_run(_cfg(tiny_llama_dir, tmp_path, do_train=False))


def test_run_train_rejects_stages_without_a_recipe(tiny_llama_dir, tmp_path, monkeypatch):
    import tuneforge.train as train

    # Every stage has a recipe; a registry without kto stands in for a missing one.
    monkeypatch.setattr(train, "RECIPES", {k: v for k, v in train.RECIPES.items() if k != "kto"})
    with pytest.raises(ConfigError, match="stage: kto training is not implemented yet; available stages: pt, sft, "
                                          "rm, dpo, ppo, grpo$"):
        run_train(_cfg(tiny_llama_dir, tmp_path, stage="kto", dataset="demo_alpaca", dataset_dir=str(DEMO_DATA)))
