"""The `tuneforge` command: exit codes, stderr texts, and what train / data check call.

Most tests call cli.main() in-process (cheap); two run the real `python -m tuneforge` in a subprocess.
"""

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tuneforge import cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_pipeline(monkeypatch):
    """Stands in for tuneforge.data.pipeline and records which entry point was called with which config."""
    calls = []
    module = types.ModuleType("tuneforge.data.pipeline")
    module.preprocess_only = lambda cfg: calls.append(("preprocess_only", cfg)) or 0
    module.run_data_check = lambda cfg: calls.append(("run_data_check", cfg)) or 0
    monkeypatch.setitem(sys.modules, "tuneforge.data.pipeline", module)
    # The dataset names in these configs ("a") exist nowhere; the name checks have their own test below.
    import tuneforge.data.preflight as preflight

    monkeypatch.setattr(preflight, "preflight_problems", lambda cfg: [])
    return calls


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model_name_or_path: some/model\ndataset: a\ntemplate: qwen\n")
    return path


def test_train_with_tokenized_path_preprocesses(config_file, fake_pipeline, tmp_path):
    code = cli.main(["train", str(config_file), f"tokenized_path={tmp_path / 'tok'}", "cutoff_len=64"])
    assert code == 0
    ((name, cfg),) = fake_pipeline
    assert name == "preprocess_only"
    assert (cfg.data.tokenized_path, cfg.data.cutoff_len, cfg.data.dataset) == (str(tmp_path / "tok"), 64, ["a"])


def test_train_without_tokenized_path_runs_the_training_recipe(config_file, fake_pipeline, monkeypatch):
    import tuneforge.train as train

    calls = []
    monkeypatch.setattr(train, "run_train", lambda cfg: calls.append(cfg))
    assert cli.main(["train", str(config_file), "learning_rate=5e-5"]) == 0
    ((cfg,),) = [calls]
    assert cfg.train.learning_rate == 5e-5
    assert fake_pipeline == []


def test_train_rejects_unimplemented_keys(config_file, fake_pipeline, capsys):
    assert cli.main(["train", str(config_file), "use_hyper_parallel=true", "tokenized_path=x"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {config_file}: not implemented yet: use_hyper_parallel (set to True; remove it or "
                   "set it back to False)\n")
    assert fake_pipeline == []


def test_data_check_calls_the_pipeline_without_check_implemented(config_file, fake_pipeline):
    assert cli.main(["data", "check", str(config_file), "quantization_bit=4"]) == 0
    assert [name for name, _ in fake_pipeline] == ["run_data_check"]


def test_data_check_needs_a_model_and_a_dataset(tmp_path, fake_pipeline, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("template: qwen\n")
    assert cli.main(["data", "check", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"error: {path}: 2 problems in the configuration:\n"
        "  - model_name_or_path is not set; `tuneforge data check` needs it.\n"
        "  - dataset is not set; `tuneforge data check` needs it.\n")


def test_config_errors_print_one_line_per_problem_and_exit_2(config_file, capsys):
    assert cli.main(["train", str(config_file), "lerning_rate=1", "stage=sfft"]) == 2
    assert capsys.readouterr().err == (
        f"error: {config_file}: 2 problems in the configuration:\n"
        "  - unknown key 'lerning_rate' (given on the command line). Did you mean: learning_rate, logging_strategy?\n"
        "  - stage: 'sfft' is not allowed; choose one of: pt, sft, rm, ppo, dpo, kto, grpo. Did you mean 'sft'?\n")


def test_overrides_alone_and_usage_errors(fake_pipeline, capsys):
    assert cli.main(["train", "model_name_or_path=m", "dataset=a", "tokenized_path=t"]) == 0
    assert cli.main(["train"]) == 2
    assert capsys.readouterr().err.startswith("error: no configuration given;")
    assert cli.main(["train", "a.yaml", "b.yaml"]) == 2
    assert capsys.readouterr().err == ("error: expected one config file, got 2: a.yaml, b.yaml; other arguments "
                                       "must look like key=value.\n")


def test_version(capsys):
    assert cli.main(["version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tuneforge 0.1.0\n") and "  transformers " in out


def run_module(*args, cwd=REPO):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "tuneforge", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


def test_subprocess_config_error_has_no_traceback(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("dataset: a\ncutoff_len: abc\n")
    result = run_module("train", str(path))
    assert result.returncode == 2
    assert result.stderr.endswith(f"error: {path}: cutoff_len: expected an integer, got 'abc' (str).\n")
    assert "Traceback" not in result.stderr


def test_subprocess_help_lists_every_command():
    result = run_module("--help")
    assert result.returncode == 0
    for command in ("train", "data", "chat", "api", "export", "eval", "expand", "webui", "version"):
        assert command in result.stdout, command


def test_template_and_dataset_names_are_checked_with_the_other_problems(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset_info.json").write_text('{"mine": {"file_name": "mine.json"}}')
    config = tmp_path / "run.yaml"
    (data / "mine.json").write_text("[]")
    config.write_text(f"model_name_or_path: m\ndataset: mine,mien2\ndataset_dir: {data}\ntemplate: qwenn\n"
                      "use_mca: true\n")
    assert cli.main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {config}: 3 problems in the configuration:\n")
    assert "  - not implemented yet: use_mca (set to True; remove it or set it back to False)\n" in err
    assert "  - template: unknown template 'qwenn'; closest: qwen, qwen3" in err
    assert "  - dataset: dataset 'mien2' is not defined in " in err
