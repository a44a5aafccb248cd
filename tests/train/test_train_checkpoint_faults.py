"""Fault injection at every phase of checkpoint publishing and of the final save: each crash is followed by
the same `tuneforge train` command, which resumes on its own, and the chain of runs ends on exactly the
uninterrupted run's losses and weights.

One output directory takes the faults one after another (a resumed run is itself crashed at the next
phase), so eight short runs cover seven faults. A crash is `Crash`, a BaseException raised at the phase's
hook point: no `except Exception` cleanup runs, as with SIGKILL (test_train_sigkill.py kills a real process
at the "staging complete, not yet renamed" point). Checkpoints at steps 2, 4, 6, 8; save_total_limit 1.

| run | fault (where the run dies)                                   | what must survive                          |
|-----|--------------------------------------------------------------|--------------------------------------------|
| 1   | checkpoint-4: adapter weights half-written in .staging       | checkpoint-2                               |
| 2   | checkpoint-4: weights + optimizer staged, trainer_state not  | checkpoint-2 (run 1's staging cleared)     |
| 3   | checkpoint-4: staging complete, crash before the rename      | checkpoint-2                               |
| 4   | checkpoint-4: renamed into place, crash before rotation      | checkpoint-2 and checkpoint-4              |
| 5   | checkpoint-6: rotation, checkpoint-2 retired half-deleted     | checkpoint-4 and -6, no half-deleted one   |
| 6   | final save: adapter half-written in output_dir               | checkpoint-8, no half adapter              |
| 7   | after the final save: train_results.json being written        | checkpoint-8 and the final adapter         |
| 8   | none: resumes from checkpoint-8 and finishes                 | the uninterrupted run's result             |
"""

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

import tuneforge.train.run.checkpoints as checkpoints_module
import tuneforge.train.trainer as trainer_module
from tuneforge.cli import main as tuneforge_main
from tuneforge.config.resume import is_complete_checkpoint
from tuneforge.train.run.checkpoints import STAGING_DIR
from tuneforge.train.trainer import TuneforgeTrainer

DEMO_DATA = Path(__file__).resolve().parents[2] / "src" / "tuneforge" / "demo" / "data"
RUN = dict(stage="sft", do_train=True, finetuning_type="lora", dataset="demo_alpaca", template="qwen",
           cutoff_len=64, max_samples=16, per_device_train_batch_size=2, learning_rate=1e-2, max_steps=8,
           save_steps=2, save_total_limit=1, logging_steps=1, report_to="none", seed=42,
           dataloader_num_workers=0, disable_tqdm=True)
ADAPTER = "adapter_model.safetensors"


class Crash(BaseException):
    """The process dies here (a BaseException: no `except Exception` handler cleans up after it)."""


def _config(tmp_path, model_dir, output_dir):
    path = tmp_path / f"{output_dir.name}.yaml"
    path.write_text(yaml.safe_dump(dict(RUN, model_name_or_path=str(model_dir), dataset_dir=str(DEMO_DATA),
                                        output_dir=str(output_dir))))
    return str(path)


def _losses(output_dir):
    with open(output_dir / "trainer_log.jsonl", encoding="utf-8") as handle:
        return {row["step"]: row["loss"] for row in map(json.loads, handle) if "loss" in row}


def _checkpoints(output_dir):
    return sorted(name for name in os.listdir(output_dir) if name.startswith("checkpoint-"))


def _staging(output_dir):
    return sorted(os.listdir(output_dir / STAGING_DIR)) if (output_dir / STAGING_DIR).is_dir() else []


def _crashes(config):
    with pytest.raises(Crash):
        tuneforge_main(["train", config])


def _in_staging(path):
    return STAGING_DIR in str(path)


@pytest.fixture(scope="module")
def straight(tiny_llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("straight")
    output_dir = root / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNEFORGE_CACHE", str(root / "cache"))
        assert tuneforge_main(["train", _config(root, tiny_llama_dir, output_dir)]) == 0
    return output_dir


def test_every_checkpoint_fault_resumes_onto_the_uninterrupted_run(straight, tiny_llama_dir, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    config = _config(tmp_path, tiny_llama_dir, run)
    save, save_rng = TuneforgeTrainer._save, TuneforgeTrainer._save_rng_state
    publish, retire = trainer_module.publish_checkpoint, trainer_module.retire_checkpoints

    # 1. checkpoint-4's adapter half-written in staging.
    def half_written_weights(self, output_dir=None, state_dict=None):
        if self.state.global_step == 4 and _in_staging(output_dir):
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            (Path(output_dir) / ADAPTER).write_bytes(b"half")
            raise Crash
        return save(self, output_dir, state_dict)

    with monkeypatch.context() as patch:
        patch.setattr(TuneforgeTrainer, "_save", half_written_weights)
        _crashes(config)
    assert _checkpoints(run) == ["checkpoint-2"] and _staging(run) == ["checkpoint-4"]
    assert (run / STAGING_DIR / "checkpoint-4" / ADAPTER).read_bytes() == b"half"

    # 2. checkpoint-4's weights, optimizer and scheduler staged; RNG state and trainer_state.json not yet.
    def crash_before_rng_state(self, output_dir):
        if self.state.global_step == 4:
            assert (Path(output_dir) / ADAPTER).stat().st_size > 100  # run 1's half adapter was cleared
            raise Crash
        return save_rng(self, output_dir)

    with monkeypatch.context() as patch:
        patch.setattr(TuneforgeTrainer, "_save_rng_state", crash_before_rng_state)
        _crashes(config)
    staged = run / STAGING_DIR / "checkpoint-4"
    assert (staged / "optimizer.pt").is_file() and not (staged / "trainer_state.json").exists()
    assert _checkpoints(run) == ["checkpoint-2"]

    # 3. checkpoint-4 complete in staging (trainer_state.json written last), crash before the rename.
    def crash_before_rename(staged_path, output_dir):
        if staged_path.endswith("checkpoint-4"):
            raise Crash
        return publish(staged_path, output_dir)

    with monkeypatch.context() as patch:
        patch.setattr(trainer_module, "publish_checkpoint", crash_before_rename)
        _crashes(config)
    assert is_complete_checkpoint(str(staged)) and _checkpoints(run) == ["checkpoint-2"]

    # 4. checkpoint-4 renamed into place; crash before the old checkpoint-2 is rotated out.
    def crash_before_rotation(output_dir, limit, best):
        if os.path.isdir(os.path.join(output_dir, "checkpoint-4")) and not os.path.isdir(
                os.path.join(output_dir, "checkpoint-6")):
            raise Crash
        return retire(output_dir, limit, best)

    with monkeypatch.context() as patch:
        patch.setattr(trainer_module, "retire_checkpoints", crash_before_rotation)
        _crashes(config)
    assert _checkpoints(run) == ["checkpoint-2", "checkpoint-4"] and _staging(run) == []
    assert all(is_complete_checkpoint(str(run / name)) for name in _checkpoints(run))

    # 5. checkpoint-6 published; the rotation dies half-way through deleting an old checkpoint.
    rmtree = shutil.rmtree

    def half_delete(path, *args, **kwargs):
        if os.path.basename(path).startswith("retired-"):
            os.remove(os.path.join(path, ADAPTER))
            raise Crash
        return rmtree(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(checkpoints_module.shutil, "rmtree", half_delete)
        _crashes(config)
    # The checkpoint being deleted sits in .staging, not in the run directory; checkpoint-4 was next.
    assert _checkpoints(run) == ["checkpoint-4", "checkpoint-6"] and _staging(run) == ["retired-checkpoint-2"]
    assert not (run / STAGING_DIR / "retired-checkpoint-2" / ADAPTER).exists()

    # 6. checkpoint-8 published; the final adapter half-written into output_dir.
    save_model = TuneforgeTrainer.save_model

    def half_written_final(self, output_dir=None, _internal_call=False):
        if output_dir is None:
            (run / ADAPTER).write_bytes(b"half")
            raise Crash
        return save_model(self, output_dir, _internal_call)

    with monkeypatch.context() as patch:
        patch.setattr(TuneforgeTrainer, "save_model", half_written_final)
        _crashes(config)
    assert _checkpoints(run) == ["checkpoint-8"] and _staging(run) == []  # the retired leftovers cleared
    assert (run / ADAPTER).read_bytes() == b"half"

    # 7. The final adapter written; crash while train_results.json is written.
    def crash_in_metrics(self, split, metrics, combined=True):
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(TuneforgeTrainer, "save_metrics", crash_in_metrics)
        _crashes(config)
    assert (run / ADAPTER).stat().st_size > 100 and not (run / "train_results.json").exists()

    # 8. No fault: the same command resumes from checkpoint-8 and finishes.
    assert tuneforge_main(["train", config]) == 0
    assert _checkpoints(run) == ["checkpoint-8"] and _staging(run) == []
    expected, resumed = _losses(straight), _losses(run)
    assert sorted(resumed) == sorted(expected) == list(range(1, 9))
    for step in expected:
        assert resumed[step] == pytest.approx(expected[step], abs=1e-6), (step, resumed, expected)
    weights, reference = load_file(run / ADAPTER), load_file(straight / ADAPTER)
    assert weights.keys() == reference.keys()
    for name, tensor in reference.items():
        assert (weights[name] - tensor).abs().max().item() <= 1e-6, name
    assert json.loads((run / "train_results.json").read_text())["epoch"] == pytest.approx(
        json.loads((straight / "train_results.json").read_text())["epoch"])
