"""dataset_info.json parsing, its error messages, and datasets named by path."""

import json

import pytest

from tuneforge.data.registry import Columns, Tags, get_dataset_attrs
from tuneforge.errors import DataError
from tuneforge.runtime import runtime


def write_info(folder, info, files=("a.json",)):
    for name in files:
        (folder / name).write_text(json.dumps([{"instruction": "q", "input": "", "output": "a"}]))
    (folder / "dataset_info.json").write_text(json.dumps(info))
    return str(folder)


def error_of(names, dataset_dir):
    with pytest.raises(DataError) as caught:
        get_dataset_attrs(names, dataset_dir)
    return str(caught.value)


def test_defaults_follow_llamafactory(tmp_path):
    folder = write_info(tmp_path, {"a": {"file_name": "a.json"}})
    [attr] = get_dataset_attrs(["a"], folder)
    assert (attr.name, attr.load_from, attr.dataset_name, attr.formatting, attr.ranking, attr.split) == (
        "a", "file", "a.json", "alpaca", False, "train")
    assert attr.columns == Columns() and (attr.columns.prompt, attr.columns.query, attr.columns.response) == (
        "instruction", "input", "output")
    assert attr.columns.messages == "conversations"
    assert attr.tags == Tags("from", "value", "human", "gpt", "observation", "function_call", "system")
    assert attr.path == str(tmp_path / "a.json") and attr.declared_columns == ()


def test_columns_and_tags_replace_the_defaults(tmp_path):
    folder = write_info(tmp_path, {"k": {
        "file_name": "a.json", "formatting": "sharegpt", "subset": "en", "split": "validation", "folder": "f",
        "num_samples": 5, "columns": {"messages": "messages", "kto_tag": "label"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}})
    [attr] = get_dataset_attrs("k", folder)
    assert (attr.subset, attr.split, attr.folder, attr.num_samples) == ("en", "validation", "f", 5)
    assert attr.columns == Columns(prompt=None, query=None, response=None, messages="messages", kto_tag="label")
    assert attr.tags == Tags("role", "content", "user", "assistant", None, None, None)
    assert attr.declared_columns == ("messages", "kto_tag")


def test_openai_formatting_without_tags_uses_openai_names(tmp_path):
    folder = write_info(tmp_path, {"o": {"file_name": "a.json", "formatting": "openai"}})
    assert get_dataset_attrs(["o"], folder)[0].tags == Tags("role", "content", "user", "assistant", "tool",
                                                            "function_call", "system")


def test_hub_urls_win_over_file_name_and_modelscope_env(tmp_path, monkeypatch):
    folder = write_info(tmp_path, {"h": {"hf_hub_url": "org/h", "ms_hub_url": "ms/h", "file_name": "a.json"},
                                   "m": {"ms_hub_url": "ms/m"}, "s": {"script_url": "my_script"}})
    monkeypatch.delenv("USE_MODELSCOPE_HUB", raising=False)
    attrs = get_dataset_attrs(["h", "m", "s"], folder)
    assert [(a.load_from, a.dataset_name) for a in attrs] == [("hf_hub", "org/h"), ("ms_hub", "ms/m"),
                                                              ("script", "my_script")]
    monkeypatch.setenv("USE_MODELSCOPE_HUB", "1")
    runtime.cache_clear()  # the environment changed after the first read of the runtime facts
    assert get_dataset_attrs(["h"], folder)[0].load_from == "ms_hub"


def test_comma_separated_names_and_online_dir(tmp_path):
    folder = write_info(tmp_path, {"a": {"file_name": "a.json"}, "b": {"file_name": "a.json"}})
    assert [a.name for a in get_dataset_attrs("a, b", folder)] == ["a", "b"]
    assert [(a.load_from, a.dataset_name) for a in get_dataset_attrs(["org/x"], "ONLINE")] == [("hf_hub", "org/x")]
    assert get_dataset_attrs(None, folder) == []


# ------------------------------------------------------------------------------------------------ errors


def test_unknown_name_suggests_close_names(tmp_path):
    folder = write_info(tmp_path, {"alpaca_en_demo": {"file_name": "a.json"},
                                   "alpaca_zh_demo": {"file_name": "a.json"}})
    message = error_of(["alpaca_en_dmo"], folder)
    assert message.startswith(f"dataset 'alpaca_en_dmo' is not defined in {folder}/dataset_info.json and is not a "
                              "file or folder (looked for ")
    assert "Did you mean: alpaca_en_demo, alpaca_zh_demo? Add an entry to" in message


def test_missing_dataset_info(tmp_path):
    message = error_of(["mine"], str(tmp_path))
    assert message.startswith(f"dataset 'mine': {tmp_path}/dataset_info.json does not exist, and 'mine' is not a "
                              "file or folder")
    assert message.endswith("Set dataset_dir to the folder holding dataset_info.json, or give the path to a data file")


def test_dataset_info_not_json(tmp_path):
    (tmp_path / "dataset_info.json").write_text('{"a": {"file_name": "a.json",}}')
    assert error_of(["a"], str(tmp_path)) == (
        f"{tmp_path}/dataset_info.json is not valid JSON: Expecting property name enclosed in double quotes at "
        "line 1 column 30. Fix the file (a JSON object mapping dataset names to their definitions)")


def test_entry_key_typos_and_bad_values_are_all_reported(tmp_path):
    folder = write_info(tmp_path, {"a": {"file_name": "a.json", "colums": {"prompt": "q"}, "formatting": "sharegtp",
                                         "ranking": "yes", "num_samples": 0,
                                         "tags": {"role": "r"}}})
    message = error_of(["a"], folder)
    where = f"{folder}/dataset_info.json: dataset 'a'"
    assert f"{where}: unknown key 'colums' (did you mean 'columns'?). Allowed keys: file_name," in message
    assert (f"{where}: formatting 'sharegtp' is not one of alpaca, sharegpt, openai "
            "(did you mean 'sharegpt'?)") in message
    assert f"{where}: ranking must be true or false, found 'yes'" in message
    assert f"{where}: num_samples must be a positive integer, found 0" in message
    assert f"{where}: unknown tags key 'role' (did you mean 'role_tag'?)" in message


def test_unknown_column_key_and_missing_source(tmp_path):
    folder = write_info(tmp_path, {"a": {"file_name": "a.json", "columns": {"promt": "q"}}, "b": {"ranking": True}})
    message = error_of(["a", "b"], folder)
    assert message.startswith("2 problems with the datasets:\n  - ")
    assert "dataset 'a': unknown columns key 'promt' (did you mean 'prompt'?)" in message
    assert ("dataset 'b': no data source; set file_name (a file or folder in dataset_dir) or hf_hub_url / "
            "ms_hub_url / script_url") in message


def test_missing_data_file_names_the_resolved_path(tmp_path):
    folder = write_info(tmp_path, {"a": {"file_name": "nope.json"}})
    assert error_of(["a"], folder) == (
        f"{folder}/dataset_info.json: dataset 'a': file_name 'nope.json' not found: looked for {tmp_path}/nope.json "
        f"(dataset_dir '{folder}' + file_name). Fix file_name in {folder}/dataset_info.json or set dataset_dir to "
        "the folder holding the data")


# ------------------------------------------------------------------------------------------ path datasets


def test_path_relative_to_dataset_dir_with_inferred_format(tmp_path):
    folder = write_info(tmp_path, {}, files=())
    (tmp_path / "chat.jsonl").write_text(json.dumps(
        {"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}], "label": True}) + "\n")
    [attr] = get_dataset_attrs(["chat.jsonl"], folder)
    assert (attr.load_from, attr.formatting, attr.info_file) == ("file", "sharegpt", None)
    assert attr.path == str((tmp_path / "chat.jsonl").resolve())
    assert attr.columns == Columns(prompt=None, query=None, response=None, messages="messages", kto_tag="label")
    assert attr.declared_columns == ("messages", "kto_tag")
    assert attr.tags.role_tag == "role" and attr.tags.user_tag == "user"


def test_path_relative_to_cwd_and_absolute_and_folder(tmp_path, monkeypatch):
    data = tmp_path / "elsewhere"
    data.mkdir()
    (data / "t.txt").write_text("line one\nline two\n")
    shards = tmp_path / "shards"
    shards.mkdir()
    for i in range(2):
        (shards / f"{i}.json").write_text(json.dumps([{"instruction": "q", "output": "a"}]))
    monkeypatch.chdir(tmp_path)
    attrs = get_dataset_attrs(["elsewhere/t.txt", str(shards)], str(tmp_path / "no_such_dir"))
    assert attrs[0].columns.prompt == "text" and attrs[0].formatting == "alpaca"
    columns = attrs[1].columns
    assert (columns.prompt, columns.response, columns.query) == ("instruction", "output", None)


def test_registry_name_wins_over_a_file_of_that_name(tmp_path):
    folder = write_info(tmp_path, {"a.json": {"file_name": "a.json", "columns": {"prompt": "instruction"}}})
    [attr] = get_dataset_attrs(["a.json"], folder)
    assert attr.info_file == f"{folder}/dataset_info.json" and attr.declared_columns == ("prompt",)
