"""Ctrl-C during `tuneforge train`: the first SIGINT finishes the step, writes a checkpoint and prints the
exact resume command (exit 130, no final adapter); a second SIGINT stops at once without a checkpoint.

The run is a real `tuneforge train` process on the bundled demo data whose steps after the second are slowed
down (SLOW_RUN), so that the signals land inside a known step, not "after some seconds"."""

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
           cutoff_len=64, per_device_train_batch_size=2, learning_rate=1e-3, max_steps=50, save_steps=1000,
           logging_steps=1, report_to="none", seed=42, dataloader_num_workers=0, disable_tqdm=True)
# `python -c SLOW_RUN <output_dir> train <config>`: from step 3 on, each micro-batch first creates
# <output_dir>/in-step-N and then takes 3 s.
SLOW_RUN = """
import os, sys, time
from tuneforge.cli import main
from tuneforge.train.trainer import TuneforgeTrainer

output_dir, step = sys.argv[1], TuneforgeTrainer.training_step

def slow_step(self, *args, **kwargs):
    if self.state.global_step >= 2:
        open(os.path.join(output_dir, f"in-step-{self.state.global_step + 1}"), "w").close()
        time.sleep(3)
    return step(self, *args, **kwargs)

TuneforgeTrainer.training_step = slow_step
sys.exit(main(sys.argv[2:]))
"""


def _start(tiny_llama_dir, tmp_path):
    output_dir = tmp_path / "run"
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(dict(RUN, model_name_or_path=str(tiny_llama_dir), dataset_dir=str(DEMO_DATA),
                                          output_dir=str(output_dir))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TUNEFORGE_CACHE=str(tmp_path / "cache"))
    process = subprocess.Popen([sys.executable, "-c", SLOW_RUN, str(output_dir), "train", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    marker = output_dir / "in-step-3"
    deadline = time.time() + 240
    while not marker.exists():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.time() < deadline, "step 3 never started"
        time.sleep(0.1)
    return process, output_dir


def test_the_first_ctrl_c_saves_a_checkpoint_and_prints_the_resume_command(tiny_llama_dir, tmp_path):
    process, output_dir = _start(tiny_llama_dir, tmp_path)
    process.send_signal(signal.SIGINT)  # inside step 3
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-3000:]
    checkpoint = output_dir / "checkpoint-3"
    assert (checkpoint / "trainer_state.json").is_file() and (checkpoint / "adapter_model.safetensors").is_file()
    assert f"Stopped after step 3/50; checkpoint saved: {checkpoint}\n" in err
    assert (f"Resume with: tuneforge train {output_dir / 'run.yaml'} resume_from_checkpoint={checkpoint}\n"
            in err)
    assert err.rstrip().endswith("interrupted")
    assert not (output_dir / "adapter_model.safetensors").exists()  # an interrupted run has no final result
    assert not (output_dir / "in-step-5").exists()


def test_a_second_ctrl_c_stops_at_once_without_a_checkpoint(tiny_llama_dir, tmp_path):
    process, output_dir = _start(tiny_llama_dir, tmp_path)
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)  # still inside step 3 (3 s)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-3000:]
    assert "press Ctrl-C again to stop at once" in err
    assert not [name for name in os.listdir(output_dir) if name.startswith("checkpoint-")]
    assert not (output_dir / "adapter_model.safetensors").exists()
    assert "Resume with" not in err
