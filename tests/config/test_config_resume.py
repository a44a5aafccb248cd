"""An output_dir holding checkpoints resumes from the last complete one (LLaMA-Factory's rule)."""

import pytest

from tuneforge.config import make_config
from tuneforge.errors import ConfigError


def checkpoint(output_dir, step, complete=True):
    path = output_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if complete:
        (path / "trainer_state.json").write_text("{}")
    return str(path)


def train_config(output_dir, **values):
    return make_config({"do_train": True, "dataset": "a", "output_dir": str(output_dir), **values})


def test_resumes_from_the_last_complete_checkpoint(tmp_path):
    checkpoint(tmp_path, 5)
    last = checkpoint(tmp_path, 20)
    checkpoint(tmp_path, 100, complete=False)  # killed while saving
    checkpoint(tmp_path, 3)
    (tmp_path / "checkpoint-tmp-30").mkdir()
    cfg = train_config(tmp_path)
    assert cfg.train.resume_from_checkpoint == last
    assert cfg.training_args.resume_from_checkpoint == last


def test_no_resume_when_overwriting_or_not_training_or_user_chose(tmp_path):
    checkpoint(tmp_path, 5)
    assert train_config(tmp_path, overwrite_output_dir=True).train.resume_from_checkpoint is None
    assert make_config({"output_dir": str(tmp_path)}).train.resume_from_checkpoint is None
    other = checkpoint(tmp_path / "elsewhere", 1)
    assert train_config(tmp_path, resume_from_checkpoint=other).train.resume_from_checkpoint == other
    assert train_config(tmp_path, resume_from_checkpoint=False).train.resume_from_checkpoint is None


def test_full_reward_model_training_never_resumes(tmp_path):
    checkpoint(tmp_path, 5)
    cfg = train_config(tmp_path, stage="rm", finetuning_type="full", resume_from_checkpoint=True)
    assert cfg.train.resume_from_checkpoint is None


def test_true_and_auto(tmp_path):
    assert train_config(tmp_path, resume_from_checkpoint="auto").train.resume_from_checkpoint is None
    with pytest.raises(ConfigError) as info:
        train_config(tmp_path, resume_from_checkpoint=True)
    assert info.value.problems == [f"resume_from_checkpoint is True but output_dir {str(tmp_path)!r} holds no "
                                   "complete checkpoint-N folder; remove resume_from_checkpoint to start a new run."]
    last = checkpoint(tmp_path, 7)
    assert train_config(tmp_path, resume_from_checkpoint="auto").train.resume_from_checkpoint == last
    assert train_config(tmp_path, resume_from_checkpoint=True).train.resume_from_checkpoint == last


def test_missing_checkpoint_path(tmp_path):
    with pytest.raises(ConfigError) as info:
        train_config(tmp_path, resume_from_checkpoint=str(tmp_path / "checkpoint-9"))
    assert info.value.problems == [f"resume_from_checkpoint: checkpoint folder "
                                   f"{str(tmp_path / 'checkpoint-9')!r} not found."]


def test_output_dir_with_a_finished_model_needs_overwrite(tmp_path):
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError) as info:
        train_config(tmp_path)
    assert info.value.problems == [f"output_dir {str(tmp_path)!r} already holds a trained model; set "
                                   "overwrite_output_dir: true to replace it, or choose another output_dir."]
    assert train_config(tmp_path, overwrite_output_dir=True).train.resume_from_checkpoint is None
