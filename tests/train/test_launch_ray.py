"""Ray as the cluster engine: when it is used, what a worker may ask for, the error without Ray, and (opt-in,
TUNEFORGE_RAY_RUN=1) a real local Ray cluster with 2 CPU workers giving torchrun's 2-process losses."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tuneforge.config import make_config
from tuneforge.errors import ConfigError
from tuneforge.train.launch import ray as ray_launch

REPO = Path(__file__).resolve().parents[2]


def test_use_ray_or_several_workers_means_ray():
    train = make_config({}).train
    assert not ray_launch.wants_ray(train, {})
    assert ray_launch.wants_ray(train, {"USE_RAY": "1"})
    assert ray_launch.wants_ray(make_config({"ray_num_workers": 2}).train, {})
    assert ray_launch.run_under_ray(make_config({}), {}) is None  # a plain run never imports ray
    rank = {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}  # one rank of a launched run trains itself
    assert ray_launch.run_under_ray(make_config({"ray_num_workers": 2}), rank) is None


def test_without_ray_installed_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"ray_num_workers: 2 trains through Ray Train, but Ray is not installed: "
                                          r"pip install 'tuneforge\[ray\]'"):
        ray_launch.run_under_ray(make_config({"ray_num_workers": 2}), {})
    with pytest.raises(ConfigError, match="USE_RAY=1 trains through Ray Train"):
        ray_launch.run_under_ray(make_config({}), {"USE_RAY": "1"})


def test_worker_resources_default_to_a_gpu_only_where_the_cluster_has_one():
    train = make_config({"ray_num_workers": 2}).train
    assert ray_launch.worker_resources(train, {"CPU": 2.0}) == {"CPU": 1.0}
    assert ray_launch.worker_resources(train, {"CPU": 8.0, "GPU": 2.0}) == {"GPU": 1.0}
    gpu = make_config({"ray_num_workers": 2, "resources_per_worker": '{"GPU": 1}'}).train
    with pytest.raises(ConfigError, match=r"resources_per_worker: a worker asks for \{GPU: 1\} but the Ray cluster "
                                          r"has \{CPU: 2\}; its workers would wait forever"):
        ray_launch.worker_resources(gpu, {"CPU": 2.0})
    three = make_config({"ray_num_workers": 3, "resources_per_worker": {"CPU": 1}}).train
    with pytest.raises(ConfigError, match=r"ray_num_workers: 3 workers x resources_per_worker \{'CPU': 1\} need "
                                          r"\{'CPU': 3\}, more CPU than the Ray cluster has \(\{'CPU': 2.0\}\): "
                                          r"this cluster lacks the hardware for 3 workers"):
        ray_launch.worker_resources(three, {"CPU": 2.0})
    # LLaMA-Factory's qwen3_lora_sft_ray.yaml: 4 workers and no resources_per_worker, on a 2-CPU cluster. The
    # default of one CPU per worker must be checked too, or Ray waits forever for the 3rd and 4th worker.
    four = make_config({"ray_num_workers": 4}).train
    with pytest.raises(ConfigError, match=r"ray_num_workers: 4 workers x resources_per_worker \{'CPU': 1.0\} need "
                                          r"\{'CPU': 4.0\}, more CPU than the Ray cluster has"):
        ray_launch.worker_resources(four, {"CPU": 2.0})


def _losses(output_dir):
    return {row["step"]: row["loss"] for row in map(json.loads, open(Path(output_dir) / "trainer_log.jsonl"))}


@pytest.mark.skipif(os.environ.get("TUNEFORGE_RAY_RUN") != "1",
                    reason="starts a local Ray cluster and 2 workers, plus a torchrun run (457 s measured on 2 "
                    "shared cores); set TUNEFORGE_RAY_RUN=1 to run it")
def test_two_ray_cpu_workers_match_torchrun_with_two_processes(tmp_path, tiny_qwen2_dir):
    pytest.importorskip("ray")
    settings = dict(model_name_or_path=str(tiny_qwen2_dir), stage="sft", do_train=True, finetuning_type="lora",
                    dataset="demo_alpaca", dataset_dir=str(REPO / "src" / "tuneforge" / "demo" / "data"),
                    template="qwen", cutoff_len=64, max_samples=16, per_device_train_batch_size=2, max_steps=3,
                    logging_steps=1, learning_rate=0.01, report_to="none", save_strategy="no")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TUNEFORGE_CACHE": str(tmp_path / "cache")}
    for name in ("FORCE_TORCHRUN", "NNODES", "RANK", "WORLD_SIZE", "LOCAL_RANK", "TUNEFORGE_LAUNCHED", "USE_RAY"):
        env.pop(name, None)
    runs = {"torchrun": ({"NPROC_PER_NODE": "2"}, {}),
            "ray": ({}, {"ray_num_workers": 2, "ray_run_name": "tiny", "ray_storage_path": str(tmp_path / "ray_state"),
                         "ray_init_kwargs": {"num_cpus": 2, "include_dashboard": False}})}
    for name, (extra_env, extra) in runs.items():
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump({**settings, **extra, "output_dir": str(tmp_path / name)}))
        done = subprocess.run([sys.executable, "-m", "tuneforge", "train", str(config)], cwd=tmp_path,
                              env={**env, **extra_env}, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    torchrun, ray = _losses(tmp_path / "torchrun"), _losses(tmp_path / "ray")
    assert sorted(ray) == [1, 2, 3]
    assert ray == pytest.approx(torchrun, rel=1e-4)
    assert (tmp_path / "ray" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "ray_state" / "tiny").is_dir()  # Ray Train's run state: <ray_storage_path>/<ray_run_name>
