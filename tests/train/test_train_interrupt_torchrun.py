"""Ctrl-C on `tuneforge train` under torchrun (2 gloo workers): torchrun starts its workers in sessions of
their own, so only the launcher gets the terminal's SIGINT. It passes it on: both workers finish the step,
write one checkpoint and print the resume command, the run exits 130, and no worker is left behind.

The workers' steps from step 3 on are slowed down by a sitecustomize (SLOW_STEPS) that also records each
worker's pid, so the signal lands inside a known step and the test can check that every worker is gone."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

SRC = Path(__file__).resolve().parents[2] / "src"
DEMO_DATA = SRC / "tuneforge" / "demo" / "data"
RUN = dict(stage="sft", do_train=True, finetuning_type="lora", dataset="demo_alpaca", template="qwen",
           cutoff_len=64, max_samples=16, per_device_train_batch_size=1, learning_rate=1e-3, max_steps=50,
           save_steps=1000, logging_steps=1, report_to="none", seed=42, dataloader_num_workers=0,
           disable_tqdm=True)
# Imported by every interpreter of the run; acts in torchrun's workers only (they have LOCAL_RANK).
SLOW_STEPS = """
import os, time
if "LOCAL_RANK" in os.environ and os.environ.get("SLOW_STEPS_DIR"):
    from tuneforge.train.trainer import TuneforgeTrainer

    marker_dir, step = os.environ["SLOW_STEPS_DIR"], TuneforgeTrainer.training_step

    def slow_step(self, *args, **kwargs):
        if self.state.global_step >= 2:
            name = f"in-step-{self.state.global_step + 1}-rank{os.environ['RANK']}"
            with open(os.path.join(marker_dir, name), "w") as handle:
                handle.write(str(os.getpid()))
            time.sleep(3)
        return step(self, *args, **kwargs)

    TuneforgeTrainer.training_step = slow_step
"""


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_ctrl_c_under_torchrun_checkpoints_on_every_rank_and_leaves_no_worker(tiny_llama_dir, tmp_path):
    output_dir, markers, site = tmp_path / "run", tmp_path / "markers", tmp_path / "site"
    markers.mkdir()
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_STEPS)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(dict(RUN, model_name_or_path=str(tiny_llama_dir), dataset_dir=str(DEMO_DATA),
                                          output_dir=str(output_dir))))
    env = {name: value for name, value in os.environ.items()
           if name not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID", "TUNEFORGE_LAUNCHED",
                           "FORCE_TORCHRUN", "NNODES", "MASTER_PORT", "TORCHELASTIC_SIGNALS_TO_HANDLE")}
    env.update(PYTHONPATH=os.pathsep.join([str(site), str(SRC)]), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               TUNEFORGE_CACHE=str(tmp_path / "cache"), NPROC_PER_NODE="2", SLOW_STEPS_DIR=str(markers))
    process = subprocess.Popen([sys.executable, "-m", "tuneforge", "train", str(config)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)  # as a terminal's foreground job: its own group
    deadline = time.time() + 300
    while not all((markers / f"in-step-3-rank{rank}").exists() for rank in (0, 1)):
        assert process.poll() is None, process.communicate()[0][-4000:]
        assert time.time() < deadline, "step 3 never started"
        time.sleep(0.1)
    workers = [int((markers / f"in-step-3-rank{rank}").read_text()) for rank in (0, 1)]
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: the launcher's group (the workers are not in it)
    output, _ = process.communicate(timeout=180)

    assert process.returncode == 130, output[-4000:]
    assert "Interrupted: 2 worker(s) finish this step and save a checkpoint" in output
    checkpoint = output_dir / "checkpoint-3"
    assert (checkpoint / "trainer_state.json").is_file() and (checkpoint / "adapter_model.safetensors").is_file()
    assert (checkpoint / "rng_state_0.pth").is_file() and (checkpoint / "rng_state_1.pth").is_file()
    assert f"Resume with: tuneforge train {output_dir / 'run.yaml'} resume_from_checkpoint={checkpoint}" in output
    assert not (markers / "in-step-5-rank0").exists()  # stopped after step 3 (step 4 may have begun: no)
    assert not (output_dir / "adapter_model.safetensors").exists()
    assert not [pid for pid in workers if _alive(pid)], "a worker outlived the run"
