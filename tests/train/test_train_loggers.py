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
import re
from pathlib import Path

import pytest
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
    assert str(error.value) == (f"report_to: {name} is not installed (pip install {package}); "
                                "remove it from report_to or install it")


def test_missing_logger_through_the_cli_is_one_line_without_traceback(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(callbacks, "logger_installed", lambda logger_name: logger_name != "tensorboard")
    config = tmp_path / "run.yaml"
    config.write_text(f"model_name_or_path: {model_dir}\nstage: sft\ndo_train: true\ndataset: demo_alpaca\n"
                      f"dataset_dir: {DEMO_DATA}\ntemplate: qwen\noutput_dir: {tmp_path / 'out'}\n"
                      "report_to: tensorboard\n")
    assert tuneforge_main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("error: report_to: tensorboard is not installed (pip install tensorboard); "
                           "remove it from report_to or install it")


def test_unknown_and_missing_loggers_are_reported_together(model_dir, tmp_path, monkeypatch, no_weights_load):
    monkeypatch.setattr(callbacks, "logger_installed", lambda logger_name: logger_name != "wandb")
    with pytest.raises(ConfigError) as error:
        run_recipe("sft", model_dir, tmp_path, report_to=["tensorbord", "wandb"], **RUN)
    message = str(error.value)
    assert message.startswith("2 problems in the configuration:")
    assert "report_to: unknown logger 'tensorbord'; did you mean tensorboard? use none or any of " in message
    assert "swanlab" in message and "mlflow" in message  # the valid names are listed
    assert "report_to: wandb is not installed (pip install wandb)" in message


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


# --- real runs where the logger is installed -----------------------------------------------------


def _skip_unless_installed(package):
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed here")


def test_tensorboard_logs_the_training_loss(model_dir, tmp_path):
    _skip_unless_installed("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, trainer = run_recipe("sft", model_dir, tmp_path, report_to="tensorboard", **RUN)
    assert _integration_callbacks(trainer) == ["TensorBoardCallback"]
    event_files = glob.glob(str(tmp_path / "runs" / "*" / "events.out.tfevents.*"))
    assert len(event_files) == 1, event_files  # transformers' default folder: output_dir/runs/<time>_<host>
    events = EventAccumulator(os.path.dirname(event_files[0]))
    events.Reload()
    logged = {event.step: event.value for event in events.Scalars("train/loss")}
    expected = _logged_losses(tmp_path)
    assert sorted(logged) == sorted(expected) == [1, 2, 3, 4]
    for step, loss in expected.items():
        assert logged[step] == pytest.approx(loss, abs=1e-5)


def test_mlflow_logs_to_the_run_directory_file_store(model_dir, tmp_path, fresh_mlflow_env):
    _skip_unless_installed("mlflow")
    from mlflow.tracking import MlflowClient

    _, trainer = run_recipe("sft", model_dir, tmp_path, report_to="mlflow", **RUN)
    assert _integration_callbacks(trainer) == ["MLflowCallback"]
    assert (tmp_path / "mlruns").is_dir()
    client = MlflowClient(tracking_uri=f"file:{tmp_path}/mlruns")
    runs = [run for experiment in client.search_experiments()
            for run in client.search_runs([experiment.experiment_id])]
    assert len(runs) == 1
    history = {metric.step: metric.value for metric in client.get_metric_history(runs[0].info.run_id, "loss")}
    expected = _logged_losses(tmp_path)
    assert sorted(history) == sorted(expected)
    for step, loss in expected.items():
        assert history[step] == pytest.approx(loss, abs=1e-5)
    assert runs[0].data.params["learning_rate"] == "0.01"


def test_wandb_offline_run_is_written(model_dir, tmp_path, monkeypatch):
    _skip_unless_installed("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    import wandb

    _, trainer = run_recipe("sft", model_dir, tmp_path, report_to="wandb", **RUN)
    assert _integration_callbacks(trainer) == ["WandbCallback"]
    wandb.finish()  # a process exit would close the run; this test process goes on
    runs = glob.glob(str(tmp_path / "wandb" / "offline-run-*"))
    assert len(runs) == 1, runs
    run_files = glob.glob(os.path.join(runs[0], "run-*.wandb"))
    assert len(run_files) == 1, os.listdir(runs[0])
    # The run file is wandb's private record format, but history values sit in it as JSON numbers: find
    # every logged loss there rather than depend on wandb's internal reader API.
    content = open(run_files[0], "rb").read()
    assert b"train/loss" in content
    numbers = [float(text) for text in re.findall(rb"-?\d+\.\d{6,}", content)]
    for step, loss in _logged_losses(tmp_path).items():
        assert any(abs(number - loss) < 1e-5 for number in numbers), (step, loss)


def test_swanlab_local_run_is_written(model_dir, tmp_path, monkeypatch):
    _skip_unless_installed("swanlab")
    monkeypatch.setenv("SWANLAB_MODE", "local")
    monkeypatch.setenv("SWANLAB_LOG_DIR", str(tmp_path / "swanlog"))
    import swanlab
    from swanlab.integration.transformers import SwanLabCallback

    _, trainer = run_recipe("sft", model_dir, tmp_path, report_to="swanlab", **RUN)
    # swanlab's own callback replaces transformers' copy, which breaks with swanlab 0.10.
    assert _integration_callbacks(trainer) == []
    assert [type(callback) for callback in trainer.callback_handler.callbacks
            if isinstance(callback, SwanLabCallback)] == [SwanLabCallback]
    swanlab.finish()
    assert len(glob.glob(str(tmp_path / "swanlog" / "run-*"))) == 1, "SwanLab wrote no local run"
