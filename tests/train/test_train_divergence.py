"""A diverged run (NaN/inf loss, gradient norm or weights) stops with a clear error and saves no result; a
collapsed run (gradient norm exactly 0 step after step) is warned about; a healthy run is untouched."""

import logging
import os
from pathlib import Path

import pytest
import torch
import yaml

from tuneforge.cli import main as tuneforge_main
from tuneforge.errors import UserError
from tuneforge.train.run.divergence import (COLLAPSE_STEPS, MAX_SKIPPED_OVERFLOW_STEPS, DivergenceGuard,
                                            TrainingDiverged)
from tuneforge.train.trainer import TuneforgeTrainer

DEMO_DATA = Path(__file__).resolve().parents[2] / "src" / "tuneforge" / "demo" / "data"
# 16 demo rows, batch 2: 8 steps per epoch.
RUN = dict(stage="sft", do_train=True, finetuning_type="lora", dataset="demo_alpaca", template="qwen",
           cutoff_len=64, per_device_train_batch_size=2, learning_rate=1e-3, max_steps=6, save_steps=2,
           logging_steps=1, report_to="none", seed=42, dataloader_num_workers=0, disable_tqdm=True)


def _train(tiny_llama_dir, tmp_path, **values):
    output_dir = tmp_path / "run"
    config = dict(RUN, model_name_or_path=str(tiny_llama_dir), dataset_dir=str(DEMO_DATA),
                  output_dir=str(output_dir), **values)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return tuneforge_main(["train", str(path)]), output_dir


def test_a_huge_learning_rate_stops_the_run_with_exit_2_and_saves_nothing(tiny_llama_dir, tmp_path, capsys):
    rc, output_dir = _train(tiny_llama_dir, tmp_path, learning_rate=1e38)
    err = capsys.readouterr().err
    assert rc == 2
    assert ("error: training diverged at step 2/6: the loss is nan. The run stopped; no final model or adapter "
            f"was saved in {output_dir}.\nNo good checkpoint was saved before the divergence.\n") in err
    assert "Likely causes: (1) learning_rate too high (1e+38; try 10x lower" in err
    assert "(2) overflow in half precision (fp16)" in err
    assert "(3) bad data" in err
    assert "Traceback" not in err
    assert not (output_dir / "adapter_model.safetensors").exists()
    assert not [name for name in os.listdir(output_dir) if name.startswith("checkpoint-")]
    # The run's own log says why it stopped.
    assert "ERROR tuneforge.train: error: training diverged at step 2/6: the loss is nan." in (
        output_dir / "running_log.txt").read_text()


def test_weights_that_overflowed_are_never_published_as_a_checkpoint(tiny_llama_dir, tmp_path, capsys):
    # The first update of lr 1e38 overflows the LoRA weights; the checkpoint of that step is refused.
    rc, output_dir = _train(tiny_llama_dir, tmp_path, learning_rate=1e38, save_steps=1)
    err = capsys.readouterr().err
    assert rc == 2
    assert "error: training diverged at step 1/6: the trained weights hold NaN or inf (base_model.model." in err
    assert "checkpoint-1 was not saved" in err
    assert not [name for name in os.listdir(output_dir) if name.startswith("checkpoint-")]
    assert not (output_dir / ".staging").exists() or not os.listdir(output_dir / ".staging")
    assert not (output_dir / "adapter_model.safetensors").exists()


def test_the_error_names_the_last_good_checkpoint(tiny_llama_dir, tmp_path, capsys, monkeypatch):
    """The loss turns NaN at step 5: the weights after step 4 produced it, so checkpoint-4 is suspect and
    checkpoint-2 is the last good one."""
    original = TuneforgeTrainer.compute_loss

    def nan_from_step_5(self, model, inputs, *args, **kwargs):
        loss = original(self, model, inputs, *args, **kwargs)
        return loss * float("nan") if self.state.global_step + 1 >= 5 else loss

    monkeypatch.setattr(TuneforgeTrainer, "compute_loss", nan_from_step_5)
    rc, output_dir = _train(tiny_llama_dir, tmp_path)
    err = capsys.readouterr().err
    assert rc == 2
    good, suspect = output_dir / "checkpoint-2", output_dir / "checkpoint-4"
    assert "error: training diverged at step 5/6: the loss is nan." in err
    assert f"Last good checkpoint: {good} (resume_from_checkpoint: {good})." in err
    assert f"Do not resume from {suspect}: saved from weights that already diverged." in err
    assert not (output_dir / "adapter_model.safetensors").exists()


def test_a_healthy_run_is_unaffected(tiny_llama_dir, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="tuneforge"):
        rc, output_dir = _train(tiny_llama_dir, tmp_path)
    assert rc == 0
    assert (output_dir / "adapter_model.safetensors").exists()
    assert sorted(name for name in os.listdir(output_dir) if name.startswith("checkpoint-")) == [
        "checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert "collapsed" not in caplog.text


def test_a_collapsed_run_is_warned_about_once(tiny_llama_dir, tmp_path, caplog, monkeypatch):
    original = TuneforgeTrainer.compute_loss

    def no_gradient(self, model, inputs, *args, **kwargs):
        return original(self, model, inputs, *args, **kwargs) * 0.0

    monkeypatch.setattr(TuneforgeTrainer, "compute_loss", no_gradient)
    with caplog.at_level(logging.WARNING, logger="tuneforge"):
        rc, output_dir = _train(tiny_llama_dir, tmp_path, max_steps=COLLAPSE_STEPS + 2, save_steps=100)
    assert rc == 0  # a warning, not an error: the run may be doing what it was told
    warnings = [r.getMessage() for r in caplog.records if "collapsed" in r.getMessage()]
    assert warnings == [
        "training collapsed: the gradient norm has been exactly 0 for 10 steps in a row (steps 1-10) although "
        "16,384 parameters are trainable, so the weights no longer change. Likely causes: every label is masked "
        "(check template, train_on_prompt, mask_history and cutoff_len), the learning rate schedule reached 0, "
        "or the loss underflows in half precision."]
    assert "training collapsed" in (output_dir / "running_log.txt").read_text()


# --- the guard alone ---------------------------------------------------------------------------------

def _guard(tmp_path, fp16=False):
    return DivergenceGuard(str(tmp_path), learning_rate=1e-4, fp16=fp16)


def test_a_nan_gradient_norm_stops_before_the_optimizer_step(tmp_path):
    model = torch.nn.Linear(2, 2)
    guard = _guard(tmp_path)
    guard.check_step(1, 10, torch.tensor(1.5), model)
    with pytest.raises(TrainingDiverged, match=r"^training diverged at step 2/10: the gradient norm is inf\."):
        guard.check_step(2, 10, torch.tensor(float("inf")), model)
    assert issubclass(TrainingDiverged, UserError)


def test_fp16_overflow_steps_are_tolerated_until_the_loss_scaler_cannot_recover(tmp_path):
    model = torch.nn.Linear(2, 2)
    guard = _guard(tmp_path, fp16=True)
    for step in range(1, MAX_SKIPPED_OVERFLOW_STEPS):  # the scaler skips these steps and lowers its scale
        guard.check_step(step, 100, float("nan"), model)
    guard.check_step(MAX_SKIPPED_OVERFLOW_STEPS, 100, 2.0, model)  # a good step resets the count
    for step in range(MAX_SKIPPED_OVERFLOW_STEPS + 1, 2 * MAX_SKIPPED_OVERFLOW_STEPS):
        guard.check_step(step, 100, float("inf"), model)
    with pytest.raises(TrainingDiverged, match=f"has been inf for {MAX_SKIPPED_OVERFLOW_STEPS} steps in a row "
                                               r"\(fp16 loss scaling cannot recover\)"):
        guard.check_step(2 * MAX_SKIPPED_OVERFLOW_STEPS, 100, float("inf"), model)


def test_a_non_finite_loss_is_fatal_even_under_fp16(tmp_path):
    guard = _guard(tmp_path, fp16=True)
    guard.observe_loss(torch.tensor(2.0))
    guard.observe_loss(torch.tensor(float("inf")))
    with pytest.raises(TrainingDiverged, match=r"(?s)step 3/9: the loss is inf\..*\(fp16: true; use bf16: true"):
        guard.check_step(3, 9, 1.0, torch.nn.Linear(2, 2))


def test_a_non_finite_loss_on_another_rank_stops_this_one_too(tmp_path):
    guard = DivergenceGuard(str(tmp_path), learning_rate=1e-4, fp16=False, any_rank=lambda flag: True)
    guard.observe_loss(torch.tensor(1.0))
    with pytest.raises(TrainingDiverged, match="the loss is not finite on another rank"):
        guard.check_step(1, 9, 1.0, torch.nn.Linear(2, 2))


def test_zero_norms_without_gradients_are_no_collapse(tmp_path, caplog):
    """Layer-wise GaLore/APOLLO free every gradient during backward: the Trainer then reports norm 0."""
    model = torch.nn.Linear(2, 2)
    guard = _guard(tmp_path)
    with caplog.at_level(logging.WARNING, logger="tuneforge"):
        for step in range(1, 2 * COLLAPSE_STEPS):
            guard.check_step(step, 100, 0.0, model)
    assert "collapsed" not in caplog.text
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    with caplog.at_level(logging.WARNING, logger="tuneforge"):
        for step in range(1, COLLAPSE_STEPS + 1):
            guard.check_step(step, 100, 0.0, model)
    assert "although 6 parameters are trainable" in caplog.text
