"""A disk that fills while a checkpoint or the final model is written: `error: no space left ...` (exit 2),
no half-written checkpoint left behind, and the previous checkpoint complete and resumable."""

import errno
import os
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import save_file

from tuneforge.cli import main as tuneforge_main
from tuneforge.config.resume import is_complete_checkpoint
from tuneforge.errors import UserError
from tuneforge.train.run.disk_full import DiskFull, is_disk_full
from tuneforge.train.trainer import TuneforgeTrainer

DEMO_DATA = Path(__file__).resolve().parents[2] / "src" / "tuneforge" / "demo" / "data"
# 16 demo rows, batch 2: 8 steps per epoch; checkpoints at steps 2 and 4, the disk fills at 4.
RUN = dict(stage="sft", do_train=True, finetuning_type="lora", dataset="demo_alpaca", template="qwen",
           cutoff_len=64, per_device_train_batch_size=2, learning_rate=1e-3, max_steps=6, save_steps=2,
           logging_steps=1, report_to="none", seed=42, dataloader_num_workers=0, disable_tqdm=True)
# What torch.save raised on a real full tmpfs (torch 2.13): its zip writer notices the short write.
TORCH_SHORT_WRITE = "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"


def _train(tiny_llama_dir, tmp_path, **values):
    output_dir = Path(values.pop("output_dir", tmp_path / "run"))
    config = dict(RUN, model_name_or_path=str(tiny_llama_dir), dataset_dir=str(DEMO_DATA),
                  output_dir=str(output_dir), **values)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return tuneforge_main(["train", str(path)]), output_dir


def _fill_disk_at_step(monkeypatch, step, in_staging, error):
    """Trainer._save (the model/adapter weights) writes half a file, then raises `error` from step `step`
    on: for checkpoints when `in_staging`, else for the final save."""
    original = TuneforgeTrainer._save

    def save(self, output_dir=None, state_dict=None):
        staging = ".staging" in str(output_dir)
        if self.state.global_step >= step and staging == in_staging:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            (Path(output_dir) / "adapter_model.safetensors").write_bytes(b"half")
            raise error
        return original(self, output_dir, state_dict)

    monkeypatch.setattr(TuneforgeTrainer, "_save", save)


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   RuntimeError(TORCH_SHORT_WRITE)], ids=["enospc", "torch-short-write"])
def test_disk_full_during_a_checkpoint_names_the_previous_one(tiny_llama_dir, tmp_path, capsys, monkeypatch,
                                                              error):
    _fill_disk_at_step(monkeypatch, 4, in_staging=True, error=error)
    rc, output_dir = _train(tiny_llama_dir, tmp_path)
    err = capsys.readouterr().err
    previous = output_dir / "checkpoint-2"
    assert rc == 2
    assert f"error: no space left on {output_dir} while writing checkpoint-4 (needs about " in err
    assert "MB; free space: " in err
    assert "checkpoint-4 was not saved." in err
    assert (f"Last complete checkpoint: {previous}. Free some space (or set save_total_limit, or choose another "
            f"output_dir), then resume with resume_from_checkpoint: {previous}.") in err
    assert "Traceback" not in err
    assert not (output_dir / ".staging").exists()
    assert not (output_dir / "checkpoint-4").exists()
    assert not (output_dir / "adapter_model.safetensors").exists()
    assert is_complete_checkpoint(str(previous))

    # Space freed: the run resumes from the named checkpoint and finishes.
    monkeypatch.undo()
    rc, _ = _train(tiny_llama_dir, tmp_path, resume_from_checkpoint=str(previous))
    assert rc == 0, capsys.readouterr().err
    assert (output_dir / "adapter_model.safetensors").stat().st_size > 100
    assert is_complete_checkpoint(str(output_dir / "checkpoint-6"))


def test_disk_full_during_the_final_save_removes_the_half_written_adapter(tiny_llama_dir, tmp_path, capsys,
                                                                          monkeypatch):
    _fill_disk_at_step(monkeypatch, 0, in_staging=False, error=OSError(errno.ENOSPC, "No space left on device"))
    rc, output_dir = _train(tiny_llama_dir, tmp_path)
    err = capsys.readouterr().err
    last = output_dir / "checkpoint-6"
    assert rc == 2
    assert f"error: no space left on {output_dir} while writing the final model (needs about " in err
    assert f"resume with resume_from_checkpoint: {last}." in err
    assert not (output_dir / "adapter_model.safetensors").exists()
    assert is_complete_checkpoint(str(last))


def test_other_save_errors_keep_their_traceback(tiny_llama_dir, tmp_path, monkeypatch):
    _fill_disk_at_step(monkeypatch, 2, in_staging=True, error=OSError(errno.EACCES, "Permission denied"))
    with pytest.raises(OSError, match="Permission denied"):
        _train(tiny_llama_dir, tmp_path)


def test_is_disk_full_recognises_what_the_writers_raise(tmp_path):
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert is_disk_full(RuntimeError(TORCH_SHORT_WRITE))
    assert is_disk_full(RuntimeError("[enforce fail at inline_container.cc:820] . PytorchStreamWriter failed "
                                     "writing file data/0: file write failed"))
    assert is_disk_full(RuntimeError("basic_ios::clear: iostream error"))
    assert is_disk_full(SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"))
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise ValueError("saving failed") from inner
    except ValueError as wrapped:
        assert is_disk_full(wrapped)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(RuntimeError("CUDA out of memory"))
    assert not is_disk_full(ValueError("No space left on device"))  # not a write error


@pytest.fixture
def small_disk(tmp_path, request):
    """A tmpfs of `request.param` (e.g. "1m"); skipped where mounting is not allowed."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={request.param}", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    # Lazy: the run's log file handler may still hold a file open there, and a plain umount would then fail
    # ("busy") and leave the mount behind after the session.
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("small_disk", ["1m"], indirect=True)
def test_a_real_full_tmpfs_is_recognised(small_disk):
    mount = small_disk
    tensors = {"weight": torch.zeros(1_000_000)}  # 4 MB on a 1 MB disk
    for write in (lambda: torch.save(tensors, mount / "a.pt"),
                  lambda: save_file(tensors, str(mount / "b.safetensors"))):
        with pytest.raises(Exception) as raised:
            write()
        assert is_disk_full(raised.value), repr(raised.value)
        for name in os.listdir(mount):
            os.remove(mount / name)


# The tiny model's LoRA checkpoint takes about 316 KB: checkpoint-2 fits on 560 KB, checkpoint-4 does not.
@pytest.mark.parametrize("small_disk", ["560k"], indirect=True)
def test_a_real_full_disk_during_a_checkpoint(tiny_llama_dir, tmp_path, small_disk, capsys):
    output_dir = small_disk / "run"
    rc, _ = _train(tiny_llama_dir, tmp_path, output_dir=str(output_dir))
    err = capsys.readouterr().err
    previous = output_dir / "checkpoint-2"
    assert rc == 2
    assert f"error: no space left on {output_dir} while writing checkpoint-4 (needs about 0.3 MB; free space: " in err
    assert f"resume with resume_from_checkpoint: {previous}." in err
    assert "Traceback" not in err
    assert sorted(name for name in os.listdir(output_dir) if name.startswith(("checkpoint", "."))) == [
        "checkpoint-2"]
    assert is_complete_checkpoint(str(previous))


def test_disk_full_is_a_user_error():
    assert issubclass(DiskFull, UserError)


def test_disk_full_while_writing_the_results_after_the_final_model(tiny_llama_dir, tmp_path, capsys, monkeypatch):
    def full_disk(self, split, metrics, combined=True):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(TuneforgeTrainer, "save_metrics", full_disk)
    rc, output_dir = _train(tiny_llama_dir, tmp_path, max_steps=2)
    err = capsys.readouterr().err
    assert rc == 2
    assert (f"error: no space left on {output_dir} while writing train_results.json, all_results.json, "
            f"trainer_state.json, after the final model was saved. The trained model in {output_dir} is "
            "complete; only these summaries are missing.") in err
    assert "Traceback" not in err
    assert (output_dir / "adapter_model.safetensors").stat().st_size > 100


# `python -m torch.distributed.run --nproc-per-node=2 VOTE_SCRIPT <dir>`: rank 1's disk is full while each rank
# writes its part of checkpoint-4 (as rng_state_<rank>.pth); rank 0's write succeeds.
VOTE_SCRIPT = """
import errno, os, sys
import torch.distributed as dist
from tuneforge.train.run.disk_full import disk_full_error, ranks_where, write_then_vote

dist.init_process_group("gloo")
rank, run_dir = dist.get_rank(), sys.argv[1]

def write():
    with open(os.path.join(run_dir, f"rng_state_{rank}.pth"), "wb") as handle:
        handle.write(b"half")
        if rank == 1:
            raise OSError(errno.ENOSPC, "No space left on device")

failure, full_on = write_then_vote(write, ranks_where)
print(f"rank {rank}: own error {type(failure).__name__}; full on {full_on}", flush=True)
if full_on:
    print(f"rank {rank}: " + str(disk_full_error(run_dir, "checkpoint-4", None, full_on, 2)), flush=True)
dist.barrier()  # both ranks got here: nobody waits for the other
dist.destroy_process_group()
sys.exit(2 if full_on else 0)
"""


def test_a_full_disk_on_one_rank_stops_every_rank(tmp_path):
    import sys

    from tuneforge.train.launch.torchrun import find_free_port

    script = tmp_path / "vote.py"
    script.write_text(VOTE_SCRIPT)
    env = {"PYTHONPATH": str(DEMO_DATA.parents[2]), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
                           f"--master-port={find_free_port()}", str(script), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=120)
    out = done.stdout
    assert done.returncode != 0, out  # both ranks exit 2 (DiskFull's exit code), neither hangs
    assert "rank 0: own error NoneType; full on [1]" in out and "rank 1: own error OSError; full on [1]" in out
    for rank in (0, 1):
        assert (f"rank {rank}: no space left on {tmp_path} while writing checkpoint-4" in out), out
    assert out.count("The disk filled on rank 1 of 2; every rank stopped (none is left waiting for the "
                     "others).") == 2
