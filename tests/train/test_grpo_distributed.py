"""Stage grpo with two processes (gloo, through `tuneforge train` with NPROC_PER_NODE=2) gives the same
first step as one process with the same global batch: each rank generates for its own prompts, the batch
reward std (scale_rewards: batch) and dapo's token count span both ranks, and the gradients are summed
across them (num_iterations: 2, so the second pass's loss depends on the synchronised update)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tuneforge.config import load_config
from tuneforge.train import run_train

REPO = Path(__file__).resolve().parents[2]
REWARD = '''
def letters(completions, **kwargs):
    return [float(sum(ch in "aeiou" for ch in text)) for text in completions]
'''


def test_two_ranks_give_the_first_step_of_one_process(tmp_path, tiny_llama_dir):
    (tmp_path / "reward.py").write_text(REWARD)
    rows = [{"instruction": f"Question {i}: say something.", "output": str(i)} for i in range(8)]
    (tmp_path / "prompts.json").write_text(json.dumps(rows))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"prompts": {"file_name": "prompts.json"}}))
    settings = dict(model_name_or_path=str(tiny_llama_dir), stage="grpo", do_train=True, finetuning_type="lora",
                    dataset="prompts", dataset_dir=str(tmp_path), template="default", cutoff_len=64,
                    output_dir=str(tmp_path / "ddp"), per_device_train_batch_size=2, num_generations=4,
                    learning_rate=2e-2, max_steps=1, logging_steps=1, report_to="none",
                    reward_funcs=f"{tmp_path}/reward.py:letters", temperature=1.0, top_p=1.0, top_k=0,
                    max_completion_length=6, seed=3, num_iterations=2, loss_type="dapo", scale_rewards="batch")
    config = tmp_path / "grpo.yaml"
    config.write_text(yaml.safe_dump(settings))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TUNEFORGE_CACHE": str(tmp_path / "cache"), "NPROC_PER_NODE": "2"}
    for name in ("FORCE_TORCHRUN", "NNODES", "NODE_RANK", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT",
                 "TORCHELASTIC_RUN_ID", "TUNEFORGE_LAUNCHED"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-m", "tuneforge", "train", str(config)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]

    run_train(load_config(str(config), [f"output_dir={tmp_path / 'single'}", "per_device_train_batch_size=4"]))
    ddp, single = (json.loads(open(tmp_path / name / "trainer_log.jsonl").readline()) for name in ("ddp", "single"))
    for key in ("reward", "reward_std", "completion_length", "entropy", "loss", "clip_ratio"):
        assert ddp[key] == pytest.approx(single[key], rel=1e-3, abs=1e-6), (key, ddp, single)
    assert ddp["loss"] != 0.0  # the second pass moved the ratios: the update itself is compared
    completions = lambda name: sorted(json.loads(line)["completion"]  # noqa: E731
                                      for line in open(tmp_path / name / "grpo_samples.jsonl"))
    assert completions("ddp") == completions("single")  # each rank sampled its own half of the same rollouts
