"""Checkpoints appear atomically, resume ignores incomplete ones and continues the same trajectory."""

import json
import os
import shutil

import pytest

from test_train_recipes import run_recipe
from tuneforge.config import make_config
from tuneforge.errors import ConfigError
from tuneforge.train.trainer import TuneforgeTrainer

RUN = dict(finetuning_type="lora", learning_rate=1e-2, max_steps=8, save_steps=3, logging_steps=1,
           per_device_train_batch_size=2)  # 4 steps per epoch: checkpoint-3 is mid-epoch


@pytest.fixture(scope="module")
def model_dir(tiny_llama_dir):
    return tiny_llama_dir


def _log(output_dir):
    return {record["step"]: record["loss"]
            for record in map(json.loads, open(os.path.join(output_dir, "trainer_log.jsonl")))}


def test_checkpoint_is_invisible_until_complete(model_dir, tmp_path, monkeypatch):
    seen = []
    original = TuneforgeTrainer._save_optimizer_and_scheduler

    def spy(self, output_dir):
        # Mid-save: the checkpoint is being written in staging and is not yet in output_dir.
        seen.append((os.path.basename(os.path.dirname(output_dir)),
                     os.path.exists(os.path.join(self.args.output_dir, os.path.basename(output_dir)))))
        return original(self, output_dir)

    monkeypatch.setattr(TuneforgeTrainer, "_save_optimizer_and_scheduler", spy)
    run_recipe("sft", model_dir, tmp_path, **RUN)
    assert seen == [(".staging", False)] * 3
    assert sorted(name for name in os.listdir(tmp_path) if name.startswith("checkpoint")) == \
        ["checkpoint-3", "checkpoint-6", "checkpoint-8"]
    assert not os.path.exists(tmp_path / ".staging")


def test_resume_skips_half_written_checkpoints_and_follows_the_same_trajectory(model_dir, tmp_path):
    straight = tmp_path / "straight"
    run_recipe("sft", model_dir, straight, **RUN)
    expected = _log(straight)
    assert sorted(expected) == list(range(1, 9))

    # An interrupted run: checkpoint-3 complete, a crash while saving step 6 left staging debris, and an
    # in-place writer left checkpoint-5 without its trainer_state.json.
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(straight / "checkpoint-3", resumed / "checkpoint-3")
    shutil.copytree(straight / "checkpoint-6", resumed / ".staging" / "checkpoint-6")
    shutil.copytree(straight / "checkpoint-6", resumed / "checkpoint-5")
    os.remove(resumed / "checkpoint-5" / "trainer_state.json")
    with open(resumed / "trainer_log.jsonl", "w") as handle:  # the crashed run logged steps 1-5
        handle.writelines(json.dumps({"step": step, "loss": 99.0}) + "\n" for step in range(1, 6))

    run_recipe("sft", model_dir, resumed, **RUN)  # overwrite_output_dir false: resumes automatically
    log = _log(resumed)
    assert sorted(log) == list(range(1, 9))
    assert [log[step] for step in (1, 2, 3)] == [99.0] * 3  # kept: logged before the checkpoint
    for step in (4, 5, 6, 7, 8):
        assert log[step] == pytest.approx(expected[step], abs=1e-5), step
    assert not os.path.exists(resumed / ".staging")


def resolve_resume(values, output_dir):
    """Where a training run into output_dir resumes from: the config resolves it when it loads."""
    cfg = make_config({"do_train": True, "dataset": "a", "output_dir": output_dir, **values})
    return cfg.train.resume_from_checkpoint


def _cfg(**values):
    return values


def _checkpoint(output_dir, step, complete=True):
    path = output_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if complete:
        (path / "trainer_state.json").write_text("{}")
    return str(path)


def test_resolve_resume(tmp_path):
    assert resolve_resume(_cfg(), str(tmp_path / "new")) is None
    first = _checkpoint(tmp_path, 2)
    last = _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 12, complete=False)
    assert resolve_resume(_cfg(), str(tmp_path)) == last  # automatic
    assert resolve_resume(_cfg(resume_from_checkpoint=True), str(tmp_path)) == last
    assert resolve_resume(_cfg(resume_from_checkpoint="auto"), str(tmp_path)) == last
    assert resolve_resume(_cfg(resume_from_checkpoint=first), str(tmp_path)) == first
    assert resolve_resume(_cfg(resume_from_checkpoint=str(tmp_path / "checkpoint-12")), str(tmp_path)) == last
    assert resolve_resume(_cfg(overwrite_output_dir=True), str(tmp_path)) is None


def test_resolve_resume_errors(tmp_path):
    with pytest.raises(ConfigError, match="resume_from_checkpoint is True but .* holds no complete checkpoint-N"):
        resolve_resume(_cfg(resume_from_checkpoint=True), str(tmp_path))
    with pytest.raises(ConfigError, match="resume_from_checkpoint: checkpoint folder '/no/such/dir' not found"):
        resolve_resume(_cfg(resume_from_checkpoint="/no/such/dir"), str(tmp_path))
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match="already holds a trained model; set overwrite_output_dir: true"):
        resolve_resume(_cfg(), str(tmp_path))
