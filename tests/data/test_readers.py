"""Readers: every file type, folders, streaming, large JSON lists, and the hub path (offline here)."""

import csv
import importlib.util
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tuneforge.data import readers
from tuneforge.data.registry import get_dataset_attrs
from tuneforge.errors import DataError

ROWS = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(5)]


@pytest.fixture
def make_cfg(tmp_path):
    from tuneforge.config.loader import make_config

    def make(**keys):
        return make_config({"dataset_dir": str(tmp_path), "cache_dir": str(tmp_path / "cache"), **keys})
    return make


def read(path, cfg, streaming=False):
    [attr] = get_dataset_attrs([str(path)], cfg.data.dataset_dir)
    return readers.read_local(attr, cfg.model, streaming)


def write(path, kind, rows):
    if kind == "json":
        path.write_text(json.dumps(rows, indent=2))
    elif kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif kind == "csv":
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif kind == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif kind == "arrow":
        table = pa.Table.from_pylist(rows)
        with pa.ipc.new_stream(str(path), table.schema) as writer:
            writer.write_table(table)
    return path


@pytest.mark.parametrize("kind", ["json", "jsonl", "csv", "parquet", "arrow"])
def test_each_file_type(kind, tmp_path, make_cfg):
    path = write(tmp_path / f"d.{kind}", kind, ROWS)
    local = read(path, make_cfg())
    # CSV has no empty string: an empty cell reads as null (the converters treat both alike).
    expected = [{**row, "input": None} for row in ROWS] if kind == "csv" else ROWS
    assert local.dataset.to_list() == expected
    assert local.files == [path.resolve()]


def test_json_dict_of_lists_is_read_as_columns(tmp_path, make_cfg):
    path = tmp_path / "cols.json"
    path.write_text(json.dumps({key: [row[key] for row in ROWS] for key in ROWS[0]}))
    assert read(path, make_cfg()).dataset.to_list() == ROWS


def test_a_single_conversation_object_stays_one_row(tmp_path, make_cfg):
    row = {"conversations": [{"from": "human", "value": "u"}, {"from": "gpt", "value": "a"}]}
    path = tmp_path / "one.json"
    path.write_text(json.dumps(row))
    assert read(path, make_cfg()).dataset.to_list() == [row]


def test_txt_is_one_row_per_line(tmp_path, make_cfg):
    path = tmp_path / "corpus.txt"
    path.write_text("first line\nsecond line\n")
    assert read(path, make_cfg()).dataset.to_list() == [{"text": "first line"}, {"text": "second line"}]


def test_folder_is_read_in_name_order_and_rows_trace_back_to_files(tmp_path, make_cfg):
    folder = tmp_path / "shards"
    folder.mkdir()
    write(folder / "b.jsonl", "jsonl", ROWS[3:])
    write(folder / "a.json", "json", ROWS[:3])
    (folder / ".hidden").write_text("ignored")
    local = read(folder, make_cfg())
    assert local.dataset.to_list() == ROWS
    assert local.locate(1) == (str(folder / "a.json"), 1)
    assert local.locate(4) == (str(folder / "b.jsonl"), 1)


def test_folder_errors(tmp_path, make_cfg):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    write(mixed / "a.json", "json", ROWS)
    write(mixed / "b.csv", "csv", ROWS)
    with pytest.raises(DataError) as caught:
        read(mixed, make_cfg())
    assert str(caught.value) == (
        f"dataset '{mixed}': folder {mixed.resolve()} mixes file types (json: a.json; csv: b.csv). A dataset folder "
        "must hold files of one type: move the others out or declare them as separate datasets")

    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "notes.md").write_text("# hi")
    with pytest.raises(DataError) as caught:
        readers.data_files(odd, "odd")
    assert str(caught.value) == (f"dataset 'odd': {odd}/notes.md has an unsupported file type '.md'; use one of "
                                 ".arrow, .csv, .json, .jsonl, .parquet, .txt")


def test_missing_file_names_the_path_tried(tmp_path):
    with pytest.raises(DataError) as caught:
        readers.data_files(tmp_path / "gone.json", "gone")
    assert str(caught.value) == f"dataset 'gone': file not found: {tmp_path}/gone.json"


def info_dataset(tmp_path, file_name, content):
    """A dataset 'bad' in dataset_info.json whose file holds `content` (bytes or text)."""
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / file_name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    (folder / "dataset_info.json").write_text(json.dumps({"bad": {"file_name": file_name}}))
    [attr] = get_dataset_attrs(["bad"], str(folder))
    return attr, path


def read_error(attr, cfg):
    with pytest.raises(DataError) as caught:
        readers.read_local(attr, cfg.model, streaming=False)
    return str(caught.value)


FIX_JSON = "Fix the file (JSON files hold a list of objects, or one object per line for .jsonl)"


def test_broken_json_is_a_data_error_naming_the_file_and_line(tmp_path, make_cfg):
    attr, path = info_dataset(tmp_path, "bad.json", '[{"instruction": "q",\n "output": "a"},')
    assert read_error(attr, make_cfg()) == (
        f"dataset 'bad': line 2 of file {path} is not valid JSON: Expecting value (column 17). {FIX_JSON}")


def test_a_broken_json_lines_row_is_named_by_its_line_in_the_file(tmp_path, make_cfg):
    good = json.dumps(ROWS[0])
    attr, path = info_dataset(tmp_path, "bad.jsonl", f"{good}\n\n{good}\n{{\"instruction\": \"a\", oops}}\n{good}\n")
    assert read_error(attr, make_cfg()) == (
        f"dataset 'bad': line 4 of file {path} is not valid JSON: Expecting property name enclosed in double "
        f"quotes (column 22). {FIX_JSON}")


def test_a_json_lines_row_that_is_not_an_object(tmp_path, make_cfg):
    attr, path = info_dataset(tmp_path, "bad.jsonl", json.dumps(ROWS[0]) + "\n[1, 2]\n")
    assert read_error(attr, make_cfg()) == (
        f"dataset 'bad': line 2 of file {path} is not a JSON object: it holds a list. {FIX_JSON}")


@pytest.mark.parametrize("content, what", [("", "empty (0 bytes)"), ("  \n\n", "empty (it holds only whitespace)")])
def test_an_empty_file_is_named_with_its_dataset(tmp_path, make_cfg, content, what):
    attr, path = info_dataset(tmp_path, "empty.jsonl", content)
    expected = (f"dataset 'bad': {path} is {what}, so it holds no rows. Put the rows in it, or remove it from the "
                "dataset")
    assert read_error(attr, make_cfg()) == expected
    with pytest.raises(DataError) as caught:  # a file named by path is peeked at first
        readers.peek_first_row(path, "bad")
    assert str(caught.value) == expected


@pytest.mark.parametrize("encoding, name", [("utf-16", "UTF-16LE"), ("utf-16-be", "UTF-16BE"),
                                            ("utf-32", "UTF-32LE")])
def test_a_non_utf8_file_names_its_encoding_and_the_conversion(tmp_path, make_cfg, encoding, name):
    attr, path = info_dataset(tmp_path, "wide.json", json.dumps(ROWS).encode(encoding))
    assert read_error(attr, make_cfg()) == (
        f"dataset 'bad': {path} is encoded as {name}, but data files must be UTF-8. Convert it, e.g. "
        f"`iconv -f {name} -t UTF-8 {path} > {path.parent}/wide.utf8.json`, and point the dataset at the "
        "converted file")


def test_a_utf8_file_with_a_byte_order_mark_reads(tmp_path, make_cfg):
    path = tmp_path / "bom.json"
    path.write_text(json.dumps(ROWS), encoding="utf-8-sig")
    assert readers.peek_first_row(path, "bom") == ROWS[0]
    assert read(path, make_cfg()).dataset.to_list() == ROWS


def test_a_latin1_file_is_not_utf8(tmp_path, make_cfg):
    attr, path = info_dataset(tmp_path, "latin.jsonl", '{"instruction": "caf\u00e9", "output": "a"}\n'.encode("latin-1"))
    assert read_error(attr, make_cfg()) == (
        f"dataset 'bad': {path} is not UTF-8 text (byte 0xe9 at position 20). Convert it to UTF-8, e.g. "
        f"`iconv -f <its encoding> -t UTF-8 {path} > {path.parent}/latin.utf8.jsonl`")


def test_large_json_lists_are_read_through_json_lines(tmp_path, make_cfg, monkeypatch):
    rows = [{"instruction": f"多语言 {i}\nline", "input": "", "output": "😀" * i,
             "history": [["h", "r"]] if i % 2 else []} for i in range(50)]
    path = tmp_path / "big.json"
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=2))
    direct = read(path, make_cfg(cache_dir=str(tmp_path / "c1"))).dataset
    monkeypatch.setattr(readers, "JSON_LIST_REWRITE_BYTES", 0)
    monkeypatch.setattr(readers, "_CHUNK_CHARS", 64)  # objects span chunks
    rewritten = read(path, make_cfg(cache_dir=str(tmp_path / "c2"))).dataset
    assert list((tmp_path / "c2" / "tuneforge_json_lines").glob("big-*.jsonl"))
    assert rewritten.to_list() == direct.to_list() == rows


def test_large_json_that_is_not_a_list_of_objects_falls_back(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "JSON_LIST_REWRITE_BYTES", 0)
    for text in ('{"a": [1]}', "[1, 2]", '[{"a": 1} {"a": 2}]'):
        path = tmp_path / "x.json"
        path.write_text(text)
        assert readers._json_list_as_lines(path, str(tmp_path / "cache")) is None


def test_streaming_gives_an_iterable(tmp_path, make_cfg):
    from datasets import IterableDataset

    path = write(tmp_path / "d.jsonl", "jsonl", ROWS)
    local = read(path, make_cfg(), streaming=True)
    assert isinstance(local.dataset, IterableDataset)
    assert list(local.dataset) == ROWS


def test_peek_first_row_for_every_type(tmp_path):
    for kind in ("json", "jsonl", "parquet", "arrow"):
        assert readers.peek_first_row(write(tmp_path / f"p.{kind}", kind, ROWS), "p") == ROWS[0]
    assert readers.peek_first_row(write(tmp_path / "p.csv", "csv", ROWS), "p") == ROWS[0]  # csv: all text
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(DataError) as caught:
        readers.peek_first_row(tmp_path / "empty.json", "empty")
    assert str(caught.value) == f"dataset 'empty': {tmp_path}/empty.json holds no rows"


# ---------------------------------------------------------------------------------------------------- hub


def test_script_url_loads_a_local_dataset_folder(tmp_path, make_cfg):
    (tmp_path / "local_repo").mkdir()
    write(tmp_path / "local_repo" / "train.jsonl", "jsonl", ROWS)
    cfg = make_cfg()
    attr = hub_attr(tmp_path, {"script_url": "local_repo"})
    assert attr.load_from == "script"
    assert readers.read_hub(attr, cfg.data, cfg.model, streaming=False).to_list() == ROWS


def hub_attr(tmp_path, entry):
    (tmp_path / "dataset_info.json").write_text(json.dumps({"remote": entry}))
    return get_dataset_attrs(["remote"], str(tmp_path))[0]


def test_hub_dataset_offline_gives_a_clear_error(tmp_path, make_cfg, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = make_cfg()
    attr = hub_attr(tmp_path, {"hf_hub_url": "llamafactory/alpaca_en"})
    with pytest.raises(DataError) as caught:
        readers.read_hub(attr, cfg.data, cfg.model, streaming=False)
    message = str(caught.value)
    assert message.startswith("dataset 'remote': could not load 'llamafactory/alpaca_en' from the Hugging Face Hub "
                              "(HF_HUB_OFFLINE=1")
    assert message.endswith(f"Download the dataset on a machine with network access, copy its files next to your "
                            f"data, then set file_name to that file or folder in {tmp_path}/dataset_info.json (and "
                            "remove hf_hub_url)")


@pytest.mark.skipif(importlib.util.find_spec("modelscope") is not None, reason="modelscope is installed")
def test_modelscope_without_the_package(tmp_path, make_cfg):
    cfg = make_cfg()
    attr = hub_attr(tmp_path, {"ms_hub_url": "llamafactory/alpaca_en"})
    with pytest.raises(DataError) as caught:
        readers.read_hub(attr, cfg.data, cfg.model, streaming=False)
    assert str(caught.value).startswith("dataset 'remote' comes from the ModelScope Hub ('llamafactory/alpaca_en'), "
                                        "which needs the 'modelscope' package")


def test_an_object_in_a_later_chunk_is_not_silently_turned_into_text(tmp_path, make_cfg, monkeypatch):
    """The datasets reader takes the column types from its first chunk: an object in a later chunk (an openai
    function call) would be JSON-encoded, and the strings around it quoted. Files are read in one chunk."""
    monkeypatch.setattr(readers, "JSON_CHUNK_BYTES", 64 << 10)
    rows = [{"messages": [{"role": "user", "content": f"question {i} " + "x" * 200},
                          {"role": "assistant", "content": f"answer {i}"}]} for i in range(1000)]
    rows[900]["messages"][1]["content"] = {"name": "weather", "arguments": {}}
    path = write(tmp_path / "calls.jsonl", "jsonl", rows)
    answers = [row["messages"][1]["content"] for row in read(path, make_cfg()).dataset]
    assert answers[900] == {"name": "weather", "arguments": {}}
    assert answers[:900] + answers[901:] == [f"answer {i}" for i in range(1000) if i != 900]

    monkeypatch.setattr(readers, "JSON_ONE_CHUNK_BYTES", 0)  # the reader's own chunking: what went wrong
    answers = [row["messages"][1]["content"] for row in read(path, make_cfg(cache_dir=str(tmp_path / "c2"))).dataset]
    assert answers[900] == '{"name":"weather","arguments":{}}' and answers[901] == '"answer 901"'
