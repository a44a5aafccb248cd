"""Scale-out without processes: the launch environment read like LLaMA-Factory's launcher (plus the names users
try instead), the torchrun command line, DeepSpeed / FSDP configs checked by the engines' own validation, and
the CPU refusals."""

import dataclasses
import json

import pytest
from shared_paths import LF_EXAMPLES

from tuneforge.config import make_config
from tuneforge.data import rank_gate
from tuneforge.errors import ConfigError, DataError
from tuneforge.train.launch.deepspeed import (fill_auto_values, remaining_autos, validate_with_deepspeed,
                                              write_zero_config, zero_config)
from tuneforge.train.launch.distributed import distributed_arg_changes
from tuneforge.train.launch.fsdp import fsdp_config, validate_fsdp
from tuneforge.runtime import runtime
from tuneforge.train.launch.torchrun import launch_env, plan_launch, wants_torchrun

LF_DEEPSPEED = LF_EXAMPLES / "deepspeed"
MULTI_NODE = {"NNODES": "2", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}


def problems(env, devices=0):
    with pytest.raises(ConfigError) as caught:
        plan_launch(env, devices, free_port=12345)
    return caught.value.problems


# --- launch ------------------------------------------------------------------------------------------------


def test_one_machine_defaults_to_one_process_per_device_on_a_free_local_port():
    plan = plan_launch({}, device_count=4, free_port=12345)
    assert plan.torchrun_args() == ["--nnodes=1", "--nproc-per-node=4", "--node-rank=0",
                                    "--master-addr=127.0.0.1", "--master-port=12345"]
    assert plan.command(["run.yaml", "lr=1"])[-5:] == ["-m", "tuneforge", "train", "run.yaml", "lr=1"]
    assert plan_launch({"NPROC_PER_NODE": "2"}, device_count=0, free_port=1).nproc_per_node == 2  # CPU: gloo


def test_multi_node_reads_llamafactory_names_and_rank_as_node_rank():
    plan = plan_launch({**MULTI_NODE, "NODE_RANK": "1", "NPROC_PER_NODE": "8"}, device_count=8)
    assert plan.torchrun_args() == ["--nnodes=2", "--nproc-per-node=8", "--node-rank=1",
                                    "--master-addr=10.0.0.1", "--master-port=29500"]
    # LLaMA-Factory's docs say RANK; its launcher reads NODE_RANK, so node 1 joined as node 0 and hung.
    plan = plan_launch({**MULTI_NODE, "RANK": "1"}, device_count=8)
    assert plan.node_rank == 1
    assert plan.notes == ["RANK=1 read as NODE_RANK=1 (the name torchrun uses; set NODE_RANK to silence this)"]
    assert plan_launch({**MULTI_NODE, "NODE_ID": "1", "GPUS_PER_NODE": "2"}, 8).torchrun_args()[1:3] == [
        "--nproc-per-node=2", "--node-rank=1"]


def test_inconsistent_launch_variables_are_all_reported():
    found = problems({"NNODES": "2", "NODE_RANK": "0", "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "0",
                      "NPROC_PER_NODE": "4"}, devices=2)
    assert found == [
        "NODE_RANK=0 and RANK=1 disagree; tuneforge reads NODE_RANK (torchrun's name); unset RANK.",
        "NPROC_PER_NODE=4 but only 2 devices are visible on this machine; use NPROC_PER_NODE<=2 (one process "
        "per device).",
        "WORLD_SIZE=2 is set, but torchrun computes it per run as NNODES x NPROC_PER_NODE = 2 x 4; unset "
        "WORLD_SIZE and set NNODES (machines) and NPROC_PER_NODE (processes per machine).",
        "LOCAL_RANK=0 is set, but torchrun gives each process its own LOCAL_RANK; unset it.",
        "a run over several machines needs MASTER_ADDR and MASTER_PORT: the address and a free port of node 0, "
        "the same on every machine (a default would differ between machines and the run would hang).",
    ]
    assert problems({**MULTI_NODE, "NODE_RANK": "2"}) == [
        "NODE_RANK=2 is not in 0..1 (NNODES=2); number the machines 0 (the one at MASTER_ADDR) to NNODES-1."]
    assert problems({"NPROC_PER_NODE": "two"}) == ["NPROC_PER_NODE='two' is not a whole number."]


def test_elastic_launch_uses_c10d_rendezvous():
    env = {"RDZV_ID": "job7", "MIN_NNODES": "1", "MAX_NNODES": "3", "MAX_RESTARTS": "2",
           "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29400", "NPROC_PER_NODE": "2"}
    assert plan_launch(env, 2).torchrun_args() == [
        "--nnodes=1:3", "--nproc-per-node=2", "--rdzv-id=job7", "--rdzv-backend=c10d",
        "--rdzv-endpoint=10.0.0.1:29400", "--max-restarts=2"]
    assert problems({"MIN_NNODES": "1", "MAX_NNODES": "2", **MULTI_NODE}) == [
        "MIN_NNODES/MAX_NNODES need RDZV_ID (an elastic launch with c10d rendezvous); set RDZV_ID to any job "
        "name shared by all machines."]
    assert problems({"RDZV_ID": "j", "MIN_NNODES": "2"})[0].startswith("MIN_NNODES and MAX_NNODES go together")


@pytest.mark.parametrize("env, devices, deepspeed, expected", [
    ({}, 1, False, False),
    ({}, 2, False, True),                                 # several GPUs visible
    ({"FORCE_TORCHRUN": "1"}, 0, False, True),
    ({"NPROC_PER_NODE": "2"}, 0, False, True),            # LLaMA-Factory would silently use one process
    ({}, 0, True, True),                                  # DeepSpeed outside a launcher looks for MPI
    ({"FORCE_TORCHRUN": "1", "TORCHELASTIC_RUN_ID": "x"}, 2, True, False),  # already a torchrun worker
    ({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}, 2, False, False),  # accelerate / deepspeed launcher
    ({"TUNEFORGE_LAUNCHED": "1"}, 2, False, True),  # a leftover marker outside torchrun is not a worker
])
def test_when_train_relaunches_under_torchrun(env, devices, deepspeed, expected):
    assert wants_torchrun(env, devices, deepspeed) is expected


def test_the_web_uis_device_count_sets_nproc_per_node():
    assert launch_env(1) == {}
    assert launch_env(4) == {"NPROC_PER_NODE": "4"} and wants_torchrun(launch_env(4), device_count=0)
    with pytest.raises(ConfigError, match="device count 0: use at least 1."):
        launch_env(0)


# --- CPU rules in a launched worker -------------------------------------------------------------------------


def _train(**values):
    """The train group of a run (batch 2 x accumulation 4), with `values` changed."""
    train = make_config({"per_device_train_batch_size": 2, "gradient_accumulation_steps": 4}).train
    return dataclasses.replace(train, **values)


def test_cpu_workers_use_gloo_and_refuse_gpu_only_engines(monkeypatch):
    model = make_config({}).model
    assert distributed_arg_changes(_train(), model, "cpu") == {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    runtime.cache_clear()  # the process's facts changed on purpose (as a torchrun worker's are)
    assert distributed_arg_changes(_train(), model, "cpu") == {"ddp_backend": "gloo"}
    with pytest.raises(ConfigError, match="ddp_backend: nccl needs GPUs; on CPU the processes communicate over"):
        distributed_arg_changes(_train(ddp_backend="nccl"), model, "cpu")
    with pytest.raises(ConfigError, match="on CPU the Trainer would silently run plain DDP instead. Remove fsdp"):
        distributed_arg_changes(_train(fsdp=True), model, "cpu")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # `accelerate launch` with an FSDP config file
    runtime.cache_clear()
    with pytest.raises(ConfigError, match="fsdp: FSDP shards the model over GPUs"):
        distributed_arg_changes(_train(), model, "cpu")


# --- DeepSpeed ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(not LF_DEEPSPEED.is_dir(), reason="LLaMA-Factory examples not present")
@pytest.mark.parametrize("name, stage, offload", [("ds_z2_config.json", 2, False), ("ds_z3_config.json", 3, False),
                                                  ("ds_z3_offload_config.json", 3, True)])
def test_generated_zero_configs_match_llamafactory_and_pass_deepspeed(tmp_path, name, stage, offload):
    assert zero_config(stage, offload) == json.loads((LF_DEEPSPEED / name).read_text())
    path = write_zero_config(stage, offload, str(tmp_path))
    assert path.endswith(name.replace("_offload_config", "_offload_config")) and json.load(open(path)) == \
        zero_config(stage, offload)


@pytest.mark.parametrize("stage, offload", [(2, False), (2, True), (3, False), (3, True)])
def test_filled_autos_pass_deepspeeds_own_validation(stage, offload):
    pytest.importorskip("deepspeed")
    raw = zero_config(stage, offload)
    with pytest.raises(ConfigError, match="deepspeed: DeepSpeed rejects the config"):
        validate_with_deepspeed(raw)  # "auto" values are not a config DeepSpeed can run
    filled = fill_auto_values(raw, micro_batch=2, grad_accum=4, world_size=2, max_grad_norm=0.5, fp16=False,
                              bf16=True, hidden_size=64)
    assert remaining_autos(filled) == []
    assert (filled["train_batch_size"], filled["train_micro_batch_size_per_gpu"],
            filled["gradient_accumulation_steps"], filled["gradient_clipping"]) == (16, 2, 4, 0.5)
    assert (filled["fp16"]["enabled"], filled["bf16"]["enabled"]) == (False, True)
    if stage == 3:
        zero = filled["zero_optimization"]
        assert (zero["reduce_bucket_size"], zero["stage3_prefetch_bucket_size"],
                zero["stage3_param_persistence_threshold"]) == (4096, 3686, 640)
    validate_with_deepspeed(filled)
    assert raw["train_batch_size"] == "auto", "the generated config is left untouched"


def test_a_config_deepspeed_rejects_is_a_config_error():
    pytest.importorskip("deepspeed")
    bad = fill_auto_values(zero_config(2), micro_batch=2, grad_accum=1, world_size=1, max_grad_norm=1.0,
                           fp16=True, bf16=True, hidden_size=None)
    with pytest.raises(ConfigError, match="DeepSpeed rejects the config"):
        validate_with_deepspeed(bad)  # fp16 and bf16 together
    with pytest.raises(ConfigError, match="DeepSpeed stage 1: choose 2 or 3"):
        zero_config(1)


# --- FSDP ---------------------------------------------------------------------------------------------------


def test_fsdp_configs_pass_transformers_and_accelerate():
    plugin = validate_fsdp(fsdp_config(version=2, cpu_offload=True, layer_classes=["Qwen2DecoderLayer"],
                                       state_dict_type="SHARDED_STATE_DICT"))
    assert plugin.fsdp_version == 2 and plugin.cpu_offload is not None
    assert str(plugin.state_dict_type).endswith("SHARDED_STATE_DICT")
    assert fsdp_config(version=1)["reshard_after_forward"] == "full_shard"  # FSDP1's sharding strategy name
    with pytest.raises(ConfigError, match="fsdp_config: rejected by transformers/accelerate: `auto_wrap_policy`"):
        validate_fsdp({**fsdp_config(), "auto_wrap_policy": "EVERY_LAYER"})
    with pytest.raises(ConfigError, match="state_dict_type 'LOCAL'"):
        fsdp_config(state_dict_type="LOCAL")


# --- preprocessing once -------------------------------------------------------------------------------------


def test_other_ranks_read_the_cache_and_stop_when_the_main_process_failed(monkeypatch):
    monkeypatch.setattr(rank_gate, "is_distributed", lambda: True)
    monkeypatch.setattr(rank_gate, "_long_wait_group", lambda: None)
    # Built before the rank variables are set (transformers would join a process group for them).
    cfg = make_config({"overwrite_cache": True, "data_shared_file_system": False})
    shared = make_config({"data_shared_file_system": True})
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(rank_gate, "_exchange", lambda group, status: [None, None])
    assert rank_gate.preprocess_once(cfg, lambda run_cfg: run_cfg.data.overwrite_cache) is False
    monkeypatch.setattr(rank_gate, "_exchange", lambda group, status: ["DataError: demo: row 3 is empty", None])
    with pytest.raises(DataError, match=r"the main process failed to preprocess the data \(DataError: demo: row 3"):
        rank_gate.preprocess_once(cfg, lambda run_cfg: 1 / 0)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")  # node 1's first process: main unless the file system is shared
    runtime.cache_clear()  # the process's facts changed on purpose
    assert rank_gate.is_data_main_process(cfg)
    assert not rank_gate.is_data_main_process(shared)


# --- the `tuneforge train` command ----------------------------------------------------------------------------


@pytest.fixture
def train_command(tmp_path, monkeypatch):
    """`tuneforge train run.yaml` with the data checks stubbed and torchrun recorded instead of started."""
    import tuneforge.data.preflight as preflight
    import tuneforge.train.launch.torchrun as launch
    from tuneforge import cli

    monkeypatch.setattr(preflight, "preflight_problems", lambda cfg: [])
    launched = []
    monkeypatch.setattr(launch, "run_torchrun", lambda args: launched.append(args) or 0)
    monkeypatch.setattr(launch, "visible_device_count", lambda: 0)
    for name in ("FORCE_TORCHRUN", "NPROC_PER_NODE", "NNODES", "NODE_RANK", "RANK", "WORLD_SIZE", "LOCAL_RANK",
                 "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID", launch.LAUNCHED_ENV):
        monkeypatch.setenv(name, "")  # recorded, so what the launcher changes in os.environ is undone
        monkeypatch.delenv(name)
    path = tmp_path / "run.yaml"
    path.write_text("model_name_or_path: some/model\ndataset: a\ntemplate: qwen\n")
    return lambda: cli.main(["train", str(path), "learning_rate=1e-4"]), launched, str(path)


def test_train_relaunches_itself_under_torchrun(train_command, monkeypatch):
    run, launched, path = train_command
    monkeypatch.setenv("NPROC_PER_NODE", "2")
    monkeypatch.setenv("MASTER_PORT", "29999")
    assert run() == 0
    assert launched == [["--nnodes=1", "--nproc-per-node=2", "--node-rank=0", "--master-addr=127.0.0.1",
                         "--master-port=29999", "-m", "tuneforge", "train", path, "learning_rate=1e-4"]]


def test_train_reports_a_bad_launch_environment_before_spawning(train_command, monkeypatch, capsys):
    run, launched, _ = train_command
    monkeypatch.setenv("NNODES", "2")
    assert run() == 2
    assert capsys.readouterr().err == (
        "error: launch environment: a run over several machines needs MASTER_ADDR and MASTER_PORT: the address "
        "and a free port of node 0, the same on every machine (a default would differ between machines and the "
        "run would hang).\n")
    assert launched == []
