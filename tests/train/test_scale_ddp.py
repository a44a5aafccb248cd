"""Real multi-process runs on CPU (gloo), through the `tuneforge train` command:

1. NPROC_PER_NODE=2 on one machine: the same losses as one process at the same global batch, each rank
   trains on different samples, ddp_timeout reaches the process group, and only rank 0 tokenizes.
2. Two "nodes" on loopback (two torchrun launches, NNODES=2; node 1 given as RANK=1, the name in
   LLaMA-Factory's docs) resume run 1 from its step-2 checkpoint and reproduce its steps 3 and 4.

Both launches are made once (module fixture) and shared by the tests: each costs seconds of process start-up.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tuneforge.config import load_config
from tuneforge.train import run_train
from tuneforge.train.launch.deepspeed import zero_config
from tuneforge.train.launch.torchrun import find_free_port

REPO = Path(__file__).resolve().parents[2]
DEMO_DATA = REPO / "src" / "tuneforge" / "demo" / "data"
STEPS = 4


def _losses(output_dir):
    return {row["step"]: row["loss"] for row in map(json.loads, open(Path(output_dir) / "trainer_log.jsonl"))}


def _samples(output_dir, rank):
    return [row["samples"] for row in map(json.loads, open(Path(output_dir) / f"samples-rank{rank}.jsonl"))]


def _train(config, env, **extra_env):
    return subprocess.Popen([sys.executable, "-m", "tuneforge", "train", str(config)], cwd=config.parent,
                            env={**env, **extra_env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process):
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    return output


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_qwen2_dir):
    root = tmp_path_factory.mktemp("scale")
    settings = dict(
        model_name_or_path=str(tiny_qwen2_dir), stage="sft", do_train=True, finetuning_type="lora",
        dataset="demo_alpaca", dataset_dir=str(DEMO_DATA), template="qwen", cutoff_len=64, max_samples=16,
        per_device_train_batch_size=2, max_steps=STEPS, logging_steps=1, save_steps=2, learning_rate=0.01,
        report_to="none", output_dir=str(root / "ddp"), ddp_timeout=5400, overwrite_cache=True)
    config = root / "ddp.yaml"
    config.write_text(yaml.safe_dump(settings))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TUNEFORGE_CACHE": str(root / "cache"), "TUNEFORGE_TRACE_SAMPLES": "1"}
    for name in ("FORCE_TORCHRUN", "NNODES", "NODE_RANK", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT",
                 "TORCHELASTIC_RUN_ID", "TUNEFORGE_LAUNCHED"):
        env.pop(name, None)

    ddp_log = _finish(_train(config, env, NPROC_PER_NODE="2"))  # no FORCE_TORCHRUN: asking for 2 is enough

    # The same run in this process, 1 rank x 4 rows per step.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNEFORGE_CACHE", str(root / "cache"))
        patch.setenv("TUNEFORGE_TRACE_SAMPLES", "1")
        run_train(load_config(str(config), [f"output_dir={root / 'single'}", "per_device_train_batch_size=4",
                                            "overwrite_cache=false"]))

    # Two nodes resume the DDP run from checkpoint-2 (a shared file system: one output_dir).
    nodes_dir = root / "nodes"
    shutil.copytree(root / "ddp", nodes_dir, ignore=shutil.ignore_patterns("checkpoint-4", "samples-rank*"))
    nodes_config = root / "nodes.yaml"
    nodes_config.write_text(yaml.safe_dump({**settings, "output_dir": str(nodes_dir), "overwrite_cache": False}))
    rendezvous = dict(NNODES="2", NPROC_PER_NODE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(find_free_port()))
    node0 = _train(nodes_config, env, NODE_RANK="0", **rendezvous)
    node1 = _train(nodes_config, env, RANK="1", **rendezvous)
    node_logs = [_finish(node0), _finish(node1)]
    return {"root": root, "ddp_log": ddp_log, "node_logs": node_logs, "settings": settings, "env": env}


def test_two_ranks_match_one_process_at_the_same_global_batch(runs):
    ddp, single = _losses(runs["root"] / "ddp"), _losses(runs["root"] / "single")
    assert sorted(ddp) == sorted(single) == list(range(1, STEPS + 1))
    for step in ddp:
        assert ddp[step] == pytest.approx(single[step], rel=1e-4), (step, ddp, single)
    assert ddp[STEPS] < ddp[1]


def test_each_rank_trains_on_different_samples(runs):
    rank0, rank1 = _samples(runs["root"] / "ddp", 0), _samples(runs["root"] / "ddp", 1)
    single = _samples(runs["root"] / "single", 0)
    assert len(rank0) == len(rank1) == len(single) == STEPS
    for step in range(STEPS):
        assert len(rank0[step]) == len(rank1[step]) == 2
        assert not set(rank0[step]) & set(rank1[step]), f"step {step + 1}: both ranks got the same sample"
        assert set(rank0[step]) | set(rank1[step]) == set(single[step]), "together: the one-process batch"


def test_ddp_timeout_reaches_the_process_group_and_only_rank0_tokenizes(runs):
    log = runs["ddp_log"]
    assert log.count("process group cpu:gloo") == 2 and log.count("timeout 5400 s") == 2, log[-3000:]
    # overwrite_cache: rank 0 tokenizes and writes the cache; rank 1 waits, then loads it.
    assert log.count("saved tokenized dataset to cache") == 1
    assert log.count("loaded tokenized dataset from cache") == 1
    assert "waiting for the main process to preprocess the data (no timeout)" in log
    run_dir = runs["root"] / "ddp"
    assert (run_dir / "checkpoint-2").is_dir() and (run_dir / "adapter_model.safetensors").is_file()


def test_two_nodes_on_loopback_resume_the_run_and_reproduce_it(runs):
    node0_log, node1_log = runs["node_logs"]
    assert "RANK=1 read as NODE_RANK=1" in node1_log
    assert "node 1 of 2" in node1_log and "node 0 of 2" in node0_log
    ddp, nodes = _losses(runs["root"] / "ddp"), _losses(runs["root"] / "nodes")
    assert sorted(nodes) == list(range(1, STEPS + 1))  # steps 1-2 kept from the checkpoint, 3-4 trained again
    for step in (3, 4):
        assert nodes[step] == pytest.approx(ddp[step], rel=1e-4), (step, nodes, ddp)
    assert len(_samples(runs["root"] / "nodes", 0)) == len(_samples(runs["root"] / "nodes", 1)) == 2
    assert (runs["root"] / "nodes" / "checkpoint-4").is_dir()


@pytest.mark.skipif(os.environ.get("TUNEFORGE_DEEPSPEED_RUN") != "1",
                    reason="the first DeepSpeed run on CPU compiles its shared-memory op (~7 min on 2 busy cores); "
                    "set TUNEFORGE_DEEPSPEED_RUN=1 to run it")
def test_deepspeed_zero2_on_two_cpu_ranks_is_data_parallel_and_matches_ddp(runs):
    root = runs["root"]
    config = root / "zero2.yaml"
    config.write_text(yaml.safe_dump({**runs["settings"], "output_dir": str(root / "zero2"),
                                      "deepspeed": json.dumps(zero_config(2)), "overwrite_cache": False}))
    _finish(_train(config, runs["env"], NPROC_PER_NODE="2"))
    ddp, zero2 = _losses(root / "ddp"), _losses(root / "zero2")
    assert zero2 == pytest.approx(ddp, rel=1e-4)
    assert not set(_samples(root / "zero2", 0)[0]) & set(_samples(root / "zero2", 1)[0])
    optimizer_shards = list((root / "zero2" / "checkpoint-4").glob("global_step4/zero_pp_rank_*_optim_states.pt"))
    assert len(optimizer_shards) == 2, "ZeRO-2 partitions the optimizer state over both ranks"
    # Resume from the step-2 DeepSpeed checkpoint: steps 3 and 4 come out the same.
    shutil.copytree(root / "zero2", root / "zero2_resumed", ignore=shutil.ignore_patterns("checkpoint-4"))
    resumed = root / "zero2_resumed.yaml"
    settings = {**yaml.safe_load(config.read_text()), "output_dir": str(root / "zero2_resumed")}
    resumed.write_text(yaml.safe_dump(settings))
    _finish(_train(resumed, runs["env"], NPROC_PER_NODE="2"))
    again = _losses(root / "zero2_resumed")
    assert [again[3], again[4]] == pytest.approx([zero2[3], zero2[4]], rel=1e-4)
