"""Reading YAML/JSON files and key=value overrides."""

import json

import pytest

from tuneforge.config import load_config
from tuneforge.config.files import parse_override, parse_scalar
from tuneforge.errors import ConfigError


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_file_with_lf_number_forms(tmp_path):
    path = write(tmp_path, "run.yaml", "learning_rate: 5e-5\nnum_train_epochs: 3\nlora_dropout: 1.0e-1\n"
                                       "dataset: a,b  # comment\nresume_from_checkpoint: null\n")
    cfg = load_config(str(path))
    assert cfg.train.learning_rate == 5e-5 and isinstance(cfg.train.learning_rate, float)
    assert (cfg.train.num_train_epochs, cfg.lora.lora_dropout, cfg.data.dataset) == (3, 0.1, ["a", "b"])
    assert cfg.source == str(path)
    assert cfg.explicit == {"learning_rate": 5e-5, "num_train_epochs": 3, "lora_dropout": 0.1,
                            "dataset": ["a", "b"], "resume_from_checkpoint": None}


def test_json_file(tmp_path):
    path = write(tmp_path, "run.json", json.dumps({"dataset": "a", "cutoff_len": 64}))
    assert load_config(path).data.cutoff_len == 64


def test_overrides_win_over_values_and_file(tmp_path):
    path = write(tmp_path, "run.yaml", "cutoff_len: 64\ndataset: a\nlearning_rate: 1.0e-4\n")
    cfg = load_config(path, ["learning_rate=5e-5", "dataset=b,c", "template=qwen"], {"cutoff_len": 99})
    assert (cfg.train.learning_rate, cfg.data.dataset, cfg.data.template, cfg.data.cutoff_len) == (5e-5, ["b", "c"], "qwen", 99)


def test_no_file_only_overrides():
    assert load_config(None, ["dataset=x", "stage=pt"]).data.packing is True


@pytest.mark.parametrize("text, value", [
    ("5e-5", 5e-5), ("1.0e-4", 1e-4), ("3", 3), ("true", True), ("False", False), ("null", None), ("", None),
    ("a,b", "a,b"), ("[a, b]", ["a", "b"]), ('{"k": 1}', {"k": 1}), ("You are: helpful", "You are: helpful"),
    ("qwen", "qwen"), ("'5'", "5"), ("[unclosed", "[unclosed"),
])
def test_override_values_use_yaml_scalar_rules(text, value):
    assert parse_scalar(text) == value


def test_override_syntax():
    assert parse_override("learning_rate=5e-5") == ("learning_rate", 5e-5)
    assert parse_override("--cutoff_len=12") == ("cutoff_len", 12)
    assert parse_override("default_system=a=b") == ("default_system", "a=b")
    with pytest.raises(ConfigError, match=r"command-line override 'learning_rate' must look like key=value"):
        parse_override("learning_rate")
    with pytest.raises(ConfigError, match="must look like key=value"):
        parse_override("=3")


def test_missing_file():
    with pytest.raises(ConfigError) as info:
        load_config("no/such/run.yaml")
    assert str(info.value) == "config file 'no/such/run.yaml' does not exist; pass the path of a .yaml or .json file."


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "bad.yaml", "dataset: a\ncutoff_len: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: not valid YAML: ")
    assert "line 3" in str(info.value)


def test_invalid_json_names_file_and_line(tmp_path):
    path = write(tmp_path, "bad.json", '{"dataset": "a",\n "x": }')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: not valid JSON at line 2, column 7: Expecting value."


def test_duplicate_key_is_an_error(tmp_path):
    path = write(tmp_path, "dup.yaml", "dataset: a\ncutoff_len: 5\ndataset: b\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: key 'dataset' is given twice (lines 1 and 3); keep one."


def test_file_must_hold_a_mapping(tmp_path):
    path = write(tmp_path, "list.yaml", "- a\n- b\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: the file must hold a mapping of `key: value` lines, not a list."


def test_empty_file_gives_defaults(tmp_path):
    assert load_config(write(tmp_path, "empty.yaml", "# nothing\n")).data.cutoff_len == 2048
