"""report_to: none, tensorboard, wandb, mlflow and swanlab, each where it is installed.

Always run: a logger that is misspelt or not installed stops the run before any weights load, with the
fix in the message; MLflow's default store is a file store inside the run directory. Where a logger's
package is installed, a short real run logs to it (W&B offline, SwanLab local, MLflow file store) and the
logged losses are compared with trainer_log.jsonl; elsewhere those tests skip.
"""

import glob
import importlib.util
import json
import os
from pathlib import Path

import pytest
import yaml
from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

import tuneforge.train.run.callbacks as callbacks
import tuneforge.train.stages.sft as sft_recipe
from test_train_recipes import run_recipe
from tuneforge.cli import main as tuneforge_main
from tuneforge.errors import ConfigError

DEMO_DATA = Path(__file__).resolve().parents[2] / "src" / "tuneforge" / "demo" / "data"
RUN = dict(finetuning_type="lora", learning_rate=1e-2, max_steps=4, logging_steps=1, save_steps=100,
           per_device_train_batch_size=4)
LOGGERS = ["tensorboard", "wandb", "mlflow", "swanlab"]


@pytest.fixture(scope="module")
def model_dir(tiny_llama_dir):
    return tiny_llama_dir


@pytest.fixture
def no_weights_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model loaded before the report_to check")

    monkeypatch.setattr(sft_recipe, "load_model", refuse)


@pytest.fixture
def fresh_mlflow_env(monkeypatch):
    """MLflow's environment unset and no default chosen by an earlier test; all restored afterwards."""
    monkeypatch.delenv(callbacks.MLFLOW_URI_ENV, raising=False)
    monkeypatch.delenv(callbacks.MLFLOW_ALLOW_FILE_STORE_ENV, raising=False)
    monkeypatch.setattr(callbacks, "_mlflow_uri_we_set", None)


def _logged_losses(output_dir):
    with open(os.path.join(output_dir, "trainer_log.jsonl"), encoding="utf-8") as handle:
        return {record["step"]: record["loss"] for record in map(json.loads, handle) if "loss" in record}


def _integration_callbacks(trainer):
    integrations = tuple(INTEGRATION_TO_CALLBACK.values())
    return [type(callback).__name__ for callback in trainer.callback_handler.callbacks
            if isinstance(callback, integrations)]


# --- checks that run everywhere ------------------------------------------------------------------


def test_report_to_none_attaches_no_logger(model_dir, tmp_path):
    _, trainer = run_recipe("sft", model_dir, tmp_path, report_to="none", **RUN)
    assert trainer.args.report_to == []
    assert _integration_callbacks(trainer) == []


@pytest.mark.parametrize("name, package", [("tensorboard", "tensorboard"), ("wandb", "wandb"),
                                           ("mlflow", "mlflow"), ("swanlab", "swanlab")])
def test_missing_logger_stops_the_run_before_weights_load(model_dir, tmp_path, monkeypatch, no_weights_load,
                                                         name, package):
    monkeypatch.setattr(callbacks, "logger_installed", lambda logger_name: logger_name != name)
    with pytest.raises(ConfigError) as error:
        run_recipe("sft", model_dir, tmp_path, report_to=name, **RUN)
    assert str(error.value) == (f"report_to: {name} is not installed (pip install 'tuneforge[loggers]', or "
                                f"pip install {package}); remove it from report_to or install it")


def test_missing_logger_through_the_cli_is_one_line_without_traceback(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(callbacks, "logger_installed", lambda logger_name: logger_name != "tensorboard")
    config = tmp_path / "run.yaml"
    config.write_text(f"model_name_or_path: {model_dir}\nstage: sft\ndo_train: true\ndataset: demo_alpaca\n"
                      f"dataset_dir: {DEMO_DATA}\ntemplate: qwen\noutput_dir: {tmp_path / 'out'}\n"
                      "report_to: tensorboard\n")
    assert tuneforge_main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("error: report_to: tensorboard is not installed (pip install 'tuneforge[loggers]', or "
                           "pip install tensorboard); remove it from report_to or install it")


def test_unknown_and_missing_loggers_are_reported_together(model_dir, tmp_path, monkeypatch, no_weights_load):
    monkeypatch.setattr(callbacks, "logger_installed", lambda logger_name: logger_name != "wandb")
    with pytest.raises(ConfigError) as error:
        run_recipe("sft", model_dir, tmp_path, report_to=["tensorbord", "wandb"], **RUN)
    message = str(error.value)
    assert message.startswith("2 problems in the configuration:")
    assert "report_to: unknown logger 'tensorbord'; did you mean tensorboard? use none or any of " in message
    assert "swanlab" in message and "mlflow" in message  # the valid names are listed
    assert "report_to: wandb is not installed (pip install 'tuneforge[loggers]', or pip install wandb)" in message


def test_mlflow_defaults_to_a_file_store_in_the_run_directory(tmp_path, monkeypatch, fresh_mlflow_env):
    monkeypatch.setattr(callbacks, "logger_installed", lambda logger_name: True)
    first, second = tmp_path / "first", tmp_path / "second"
    assert callbacks.check_report_to(["mlflow"], str(first)) == ["mlflow"]
    assert os.environ["MLFLOW_TRACKING_URI"] == f"file:{first}/mlruns"
    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"  # MLflow >= 3.7 refuses file stores without it
    # A second run in the same process (Python API, web UI) gets its own store, not the first run's ...
    callbacks.check_report_to("mlflow", str(second))
    assert os.environ["MLFLOW_TRACKING_URI"] == f"file:{second}/mlruns"
    # ... while a URI the user chose is never replaced.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    callbacks.check_report_to("mlflow", str(first))
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    # Runs without MLflow leave the environment alone.
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert callbacks.check_report_to(["none"], str(first)) == []
    assert "MLFLOW_TRACKING_URI" not in os.environ


# --- one real run reporting to all four loggers (the `loggers` extra; test extras install it) -----------


def _skip_unless_installed(*packages):
    missing = [package for package in packages if importlib.util.find_spec(package) is None]
    if missing:
        pytest.skip(f"not installed here: {', '.join(missing)} (pip install 'tuneforge[loggers]')")


@pytest.fixture(scope="module")
def all_loggers(model_dir, tmp_path_factory):
    """One 4-step run reporting to TensorBoard, W&B (offline), MLflow (file store) and SwanLab (local mode,
    through LLaMA-Factory's swanlab_* keys): (output dir, trainer, losses of trainer_log.jsonl)."""
    _skip_unless_installed("tensorboard", "wandb", "mlflow", "swanlab")
    import wandb

    out = tmp_path_factory.mktemp("all_loggers")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_DIR", str(out))
        patch.setenv("WANDB_SILENT", "true")
        patch.delenv("SWANLAB_MODE", raising=False)
        patch.delenv(callbacks.MLFLOW_URI_ENV, raising=False)
        patch.delenv(callbacks.MLFLOW_ALLOW_FILE_STORE_ENV, raising=False)
        patch.setattr(callbacks, "_mlflow_uri_we_set", None)
        _, trainer = run_recipe("sft", model_dir, out, report_to=["tensorboard", "wandb", "mlflow", "swanlab"],
                                lora_rank=4, swanlab_mode="local", swanlab_logdir=str(out / "swanlog"),
                                swanlab_project="tf-tests", swanlab_run_name="tiny-run",
                                swanlab_lark_secret="do-not-log", **RUN)
        wandb.finish()  # a process exit would close these runs; this test process goes on
        import swanlab

        swanlab.finish()
    return out, trainer, _logged_losses(out)


def _assert_same_losses(logged, expected):
    assert sorted(logged) == sorted(expected) == [1, 2, 3, 4]
    for step, loss in expected.items():
        assert logged[step] == pytest.approx(loss, abs=1e-5)


def _assert_run_config(config):
    """The tuneforge configuration, by group, as the run had it (secrets masked)."""
    assert config["lora"]["lora_rank"] == 4
    assert config["method"]["finetuning_type"] == "lora" and config["method"]["stage"] == "sft"
    assert config["train"]["swanlab_run_name"] == "tiny-run"
    assert config["train"]["swanlab_lark_secret"] == "***"


def test_each_logger_gets_its_callback(all_loggers):
    from swanlab.integration.transformers import SwanLabCallback

    _, trainer, _ = all_loggers
    # swanlab's own callback replaces transformers' copy, which breaks with swanlab 0.10.
    assert _integration_callbacks(trainer) == ["TensorBoardCallback", "WandbCallback", "MLflowCallback"]
    assert [type(callback) for callback in trainer.callback_handler.callbacks
            if isinstance(callback, SwanLabCallback)] == [SwanLabCallback]


def test_tensorboard_gets_the_loss_curve_and_the_run_config(all_loggers):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _, expected = all_loggers
    event_files = glob.glob(str(out / "runs" / "*" / "events.out.tfevents.*"))
    assert len(event_files) == 1, event_files  # transformers' default folder: output_dir/runs/<time>_<host>
    events = EventAccumulator(os.path.dirname(event_files[0]))
    events.Reload()
    _assert_same_losses({event.step: event.value for event in events.Scalars("train/loss")}, expected)
    text = events.Tensors("tuneforge_config/text_summary")[0].tensor_proto.string_val[0].decode()
    _assert_run_config(json.loads(text.removeprefix("```json\n").removesuffix("\n```")))


def test_mlflow_gets_the_loss_curve_and_the_run_config(all_loggers):
    from mlflow.tracking import MlflowClient

    out, _, expected = all_loggers
    client = MlflowClient(tracking_uri=f"file:{out}/mlruns")
    runs = [run for experiment in client.search_experiments()
            for run in client.search_runs([experiment.experiment_id])]
    assert len(runs) == 1
    history = client.get_metric_history(runs[0].info.run_id, "loss")
    _assert_same_losses({metric.step: metric.value for metric in history}, expected)
    assert runs[0].data.params["learning_rate"] == "0.01"
    artifact = client.download_artifacts(runs[0].info.run_id, "tuneforge_config.json", str(out / "mlflow_dl"))
    _assert_run_config(json.loads(Path(artifact).read_text()))


def test_wandb_offline_run_gets_the_loss_curve_and_the_run_config(all_loggers):
    out, _, expected = all_loggers
    runs = glob.glob(str(out / "wandb" / "offline-run-*"))
    assert len(runs) == 1, runs
    run_files = glob.glob(os.path.join(runs[0], "run-*.wandb"))
    assert len(run_files) == 1, os.listdir(runs[0])
    # The run file is wandb's private record format, but history values sit in it as JSON numbers: find
    # every logged loss there rather than depend on wandb's internal reader API.
    from wandb.proto import wandb_internal_pb2

    losses, configs = {}, []
    for data in _wandb_records(run_files[0]):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in record.history.item}
            if "train/loss" in items:
                losses[items["train/global_step"]] = items["train/loss"]
        elif kind == "config":
            configs += [json.loads(item.value_json) for item in record.config.update if item.key == "tuneforge_config"]
    _assert_same_losses(losses, expected)
    assert len(configs) == 1
    _assert_run_config(configs[0])


def _wandb_records(path):
    """The records of a .wandb file: after its 7-byte header, LevelDB's log format (32 KiB blocks of chunks,
    each with a 7-byte header: crc, length, type FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4). wandb 0.31 keeps
    its own reader in its Go core, so the test reads the documented format itself."""
    import struct

    data, block, pos, record = Path(path).read_bytes(), 32768, 7, b""
    assert data.startswith(b":W&B")
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        record = chunk if kind in (1, 2) else record + chunk
        if kind in (1, 4):
            yield record


def test_swanlab_keys_configure_a_local_run_with_the_loss_curve_and_the_run_config(all_loggers):
    out, _, expected = all_loggers
    runs = glob.glob(str(out / "swanlog" / "run-*"))
    assert len(runs) == 1, "SwanLab wrote no local run in swanlab_logdir"
    config = yaml.safe_load(Path(runs[0], "files", "config.yaml").read_text())
    _assert_run_config(config["tuneforge_config"]["value"])
    run_record = Path(glob.glob(os.path.join(runs[0], "run-*.swanlab"))[0]).read_bytes()
    # swanlab_project and swanlab_run_name name the run (its binary record holds them as text)
    assert b"train/loss" in run_record and b"tf-tests" in run_record and b"tiny-run" in run_record
    series = []  # logs/<metric number>/1000.log: one JSON line per step
    for log in glob.glob(os.path.join(runs[0], "logs", "*", "*.log")):
        lines = [json.loads(line) for line in Path(log).read_text().splitlines() if line.strip()]
        series.append({line["index"]: line["data"] for line in lines})
    assert sum(1 for logged in series if sorted(logged) == sorted(expected) and all(
        logged[step] == pytest.approx(loss, abs=1e-5) for step, loss in expected.items())) == 1
    assert json.loads((out / "swanlab_public_config.json").read_text()) is not None  # LLaMA-Factory's file


def test_use_swanlab_needs_swanlab_installed_before_weights_load(model_dir, tmp_path, monkeypatch, no_weights_load):
    monkeypatch.setattr(callbacks, "logger_installed", lambda logger_name: logger_name != "swanlab")
    with pytest.raises(ConfigError) as error:
        run_recipe("sft", model_dir, tmp_path, use_swanlab=True, **RUN)
    assert str(error.value) == ("use_swanlab: swanlab is not installed (pip install 'tuneforge[loggers]', or pip "
                                "install swanlab); set use_swanlab: false or install it")


class _TrainerStub:
    """What attach_loggers uses of a trainer: its arguments and callback list."""

    def __init__(self, report_to):
        from transformers.trainer_callback import CallbackHandler

        self.args = type("Args", (), {"report_to": report_to})()
        self.callback_handler = CallbackHandler([], None, None, None, None)

    def add_callback(self, callback):
        self.callback_handler.add_callback(callback)

    def remove_callback(self, callback):
        self.callback_handler.remove_callback(callback)

    def is_world_process_zero(self):
        return True


@pytest.mark.parametrize("env_mode, key_mode, mode", [(None, "cloud", "cloud"), ("offline", "cloud", "offline"),
                                                      ("offline", "local", "local")])
def test_use_swanlab_attaches_swanlab_configured_by_its_keys(monkeypatch, tmp_path, env_mode, key_mode, mode):
    _skip_unless_installed("swanlab")
    from swanlab.integration.transformers import SwanLabCallback

    from tuneforge.config import make_config
    from tuneforge.train.run.loggers import RunConfigCallback, attach_loggers

    if env_mode:
        monkeypatch.setenv("SWANLAB_MODE", env_mode)
    else:
        monkeypatch.delenv("SWANLAB_MODE", raising=False)
    cfg = make_config({"use_swanlab": True, "swanlab_project": "p", "swanlab_workspace": "w",
                       "swanlab_run_name": "r", "swanlab_mode": key_mode, "swanlab_logdir": str(tmp_path),
                       "swanlab_api_key": "k3y", "output_dir": str(tmp_path)})
    trainer = _TrainerStub([])  # report_to: none; LLaMA-Factory's use_swanlab alone asks for SwanLab
    monkeypatch.setattr("swanlab.login", lambda api_key: logins.append(api_key))
    logins = []
    attach_loggers(trainer, cfg)
    swan = [callback for callback in trainer.callback_handler.callbacks if isinstance(callback, SwanLabCallback)]
    assert len(swan) == 1 and logins == ["k3y"]
    assert swan[0]._init_kwargs == {"project": "p", "workspace": "w", "experiment_name": "r", "log_dir": str(tmp_path),
                                    "mode": mode, "tags": ["tuneforge"]}
    reporter = trainer.callback_handler.callbacks[-1]
    assert isinstance(reporter, RunConfigCallback) and reporter.loggers == ["swanlab"]
    assert reporter.config["train"]["swanlab_api_key"] == "***"
