"""Validation and loading: row reports, column/stage errors, media checks, sampling, mixing, the LF demo data."""

import json
import shutil
from pathlib import Path

import pytest

from tuneforge.data.checks import RowProblem, RowReport
from tuneforge.data.loader import load_and_merge
from tuneforge.errors import ConfigError, DataError
from shared_paths import LF_DEMO_DATA

FIXTURES = Path(__file__).parents[1] / "fixtures" / "data"
INFO = f"{FIXTURES}/dataset_info.json"
LF_DEMO = LF_DEMO_DATA


@pytest.fixture
def make_cfg(tmp_path):
    from tuneforge.config.loader import make_config

    def make(**keys):
        return make_config({"dataset_dir": str(FIXTURES), "cache_dir": str(tmp_path / "cache"), **keys})
    return make


def load(names, cfg, stage="sft", **kwargs):
    return load_and_merge(names, cfg.data, cfg.model, cfg.train, stage, **kwargs)


def load_error(names, cfg, stage="sft"):
    with pytest.raises(DataError) as caught:
        load(names, cfg, stage)
    return str(caught.value)


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


# -------------------------------------------------------------------------------------------- row reports


def test_invalid_rows_are_skipped_and_reported(make_cfg):
    dataset, [report] = load(["alpaca_mixed"], make_cfg())
    assert dataset.column_names == ["prompt", "response", "system", "tools", "images", "videos", "audios"]
    assert [row["response"] for row in dataset] == [[assistant("Blue.")], [assistant("5")], [assistant("Apple.")]]
    file = f"{FIXTURES}/alpaca_mixed.json"
    assert (report.dataset, report.total, report.invalid, report.valid) == ("alpaca_mixed", 6, 3, 3)
    assert report.by_field == {"output": 2, "instruction": 1}
    assert report.examples == [
        RowProblem(file, 1, "instruction", "'instruction' and 'input' are empty: the row has no user text"),
        RowProblem(file, 3, "output", "the response is empty"),
        RowProblem(file, 4, "output", "the response is missing (null)"),
    ]
    assert report.format() == (
        f"dataset 'alpaca_mixed' (train, {file}): 6 rows, 3 invalid and skipped (by field: output: 2, instruction: 1)\n"
        f"  {file} row 1, field 'instruction': 'instruction' and 'input' are empty: the row has no user text\n"
        f"  {file} row 3, field 'output': the response is empty\n"
        f"  {file} row 4, field 'output': the response is missing (null)")


def test_report_shows_five_and_counts_the_rest():
    problems = [RowProblem("f.json", i, "output", "the response is empty") for i in range(5)]
    report = RowReport("d", "f.json", 100, 7, problems, {"output": 7})
    lines = report.format().splitlines()
    assert lines[0] == "dataset 'd' (train, f.json): 100 rows, 7 invalid and skipped (by field: output: 7)"
    assert len(lines) == 7 and lines[-1] == "  ... and 2 more"
    assert RowReport("d", "f.json", 10).format() == "dataset 'd' (train, f.json): 10 rows, all valid"


def malformed_error(dataset, count, problem):
    return (f"dataset '{dataset}': {count}; the first is {problem}. A value of the wrong type or a string that does "
            "not parse means the file was written wrongly: fix the file (or the columns/tags/formatting in "
            f"{INFO}), or set skip_invalid_rows: true to skip such rows and count them in the report")


def test_sharegpt_role_order_last_turn_and_tools_json(make_cfg):
    # tools that are not JSON: a malformed row, which stops the run ...
    assert load_error(["sharegpt_mixed"], make_cfg()) == malformed_error(
        "sharegpt_mixed", "1 malformed row",
        f"{FIXTURES}/sharegpt_mixed.json row 4, field 'tools': tools is not valid JSON (Expecting value at "
        "character 10); it must be a JSON list of function descriptions")
    # ... unless skip_invalid_rows; rows with unusable content are always skipped.
    dataset, [report] = load(["sharegpt_mixed"], make_cfg(skip_invalid_rows=True))
    assert len(dataset) == 2 and dataset[1]["prompt"][1] == {"role": "function",
                                                             "content": '{"name": "weather", "arguments": {}}'}
    assert [(p.row, p.field, p.reason, p.malformed) for p in report.examples] == [
        (1, "conversations[0]", "message 1 has role 'gpt' but must be 'human' or 'observation': messages alternate "
                                "human/observation and gpt/function_call, starting with human/observation", False),
        (3, "conversations", "ends with a 'human' message: the last message must be the answer ('gpt' or "
                             "'function_call')", False),
        (4, "tools", "tools is not valid JSON (Expecting value at character 10); it must be a JSON list of function "
                     "descriptions", True),
    ]
    assert (report.invalid, report.malformed) == (3, 1)
    assert report.format().splitlines()[0] == (
        f"dataset 'sharegpt_mixed' (train, {FIXTURES}/sharegpt_mixed.json): 5 rows, 3 invalid and skipped, 1 of "
        "them malformed (skip_invalid_rows) (by field: conversations[0]: 1, conversations: 1, tools: 1)")


def test_kto_tag_must_be_boolean(make_cfg):
    assert load_error(["kto_mixed"], make_cfg(), stage="kto") == malformed_error(
        "kto_mixed", "1 malformed row",
        f"{FIXTURES}/kto_mixed.jsonl row 1, field 'label': kto_tag must be a boolean (true or false), found str \"no\"")
    dataset, [report] = load(["kto_mixed"], make_cfg(skip_invalid_rows=True), stage="kto")
    assert [row["response"] for row in dataset] == [[assistant("4"), assistant("")], [assistant(""), assistant("7")]]
    assert [(p.row, p.field, p.reason) for p in report.examples] == [
        (1, "label", 'kto_tag must be a boolean (true or false), found str "no"')]


def test_images_must_exist_and_match_placeholders(make_cfg):
    dataset, [report] = load(["images_mixed"], make_cfg())
    assert dataset["images"] == [[f"{FIXTURES}/images/cat.png"], [f"{FIXTURES}/images/cat.png",
                                                                   f"{FIXTURES}/images/dog.png"]]
    assert [(p.row, p.field, p.reason) for p in report.examples] == [
        (1, "images", f"image file not found: 'images/bird.png' (looked in media_dir '{FIXTURES}' and the working "
                      "directory); set media_dir to the folder the paths are relative to"),
        (2, "images", "2 image(s) but 0 <image> placeholder(s) in the messages: put one <image> in the text where "
                      "each image goes"),
    ]


def test_media_dir_is_where_media_paths_resolve(make_cfg, tmp_path):
    media = tmp_path / "media"
    (media / "images").mkdir(parents=True)
    shutil.copy(FIXTURES / "images" / "cat.png", media / "images" / "bird.png")
    dataset, [report] = load(["images_mixed"], make_cfg(media_dir=str(media)))
    assert dataset["images"] == [[f"{media}/images/bird.png"]]  # cat.png is not in this media_dir
    assert report.invalid == 3


def test_a_dataset_with_no_valid_rows_stops_the_run(make_cfg):
    message = load_error(["all_bad"], make_cfg())
    assert message.startswith("dataset 'all_bad' has no valid rows: all 2 rows failed validation.\n"
                              f"dataset 'all_bad' (train, {FIXTURES}/all_bad.json): 2 rows, 2 invalid and skipped")
    assert message.endswith(f"Fix the data, or the columns/tags/formatting in {INFO}")


# -------------------------------------------------------------------------------------- column / stage errors


def test_declared_column_missing_from_the_file(make_cfg):
    assert load_error(["typo_column"], make_cfg()) == (
        f"dataset 'typo_column' ({FIXTURES}/alpaca_mixed.json): column 'answer' (columns.response in {INFO}) is not "
        f"in the data. Its columns are: instruction, input, output. Fix columns.response in {INFO}")


@pytest.mark.parametrize("name, stage, expected", [
    ("alpaca_mixed", "dpo", "stage 'dpo' needs a preference dataset (ranking: true with chosen and rejected columns), "
                            f"but {INFO} does not set ranking: true"),
    ("alpaca_mixed", "kto", f"stage 'kto' needs a true/false label per row: set columns.kto_tag in {INFO}"),
    ("kto_mixed", "sft", "is a KTO dataset (columns.kto_tag is set), which stage 'sft' cannot train on; use stage: "
                         "kto, or remove kto_tag from its columns"),
])
def test_stage_mismatch(make_cfg, name, stage, expected):
    assert expected in load_error([name], make_cfg(), stage)


def test_preference_dataset_outside_rm_and_dpo(tmp_path, make_cfg):
    (tmp_path / "p.json").write_text(json.dumps([{"instruction": "q", "chosen": "c", "rejected": "r"}]))
    message = load_error([str(tmp_path / "p.json")], make_cfg(), "sft")
    assert message.endswith("is a preference dataset (ranking: true) and cannot be used with stage 'sft'; use it "
                            "with stage rm or dpo")
    dataset, _ = load([str(tmp_path / "p.json")], make_cfg(), "dpo")
    assert dataset[0]["response"] == [assistant("c"), assistant("r")]


def test_sft_needs_a_response_column_but_prediction_does_not(tmp_path, make_cfg):
    (tmp_path / "q.json").write_text(json.dumps([{"instruction": "q1"}, {"instruction": "q2"}]))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"q": {"file_name": "q.json"}}))
    cfg = make_cfg(dataset_dir=str(tmp_path))
    assert load_error(["q"], cfg).endswith(f"stage 'sft' needs a response column: the data has no 'output' column "
                                           f"for the response. Set columns.response in {tmp_path}/dataset_info.json")
    predict = make_cfg(dataset_dir=str(tmp_path), predict_with_generate=True)
    dataset, _ = load(["q"], predict, split_name="validation")
    assert dataset["prompt"] == [[user("q1")], [user("q2")]] and dataset["response"] == [[], []]
    text, _ = load(["q"], cfg, stage="pt")
    assert len(text) == 2


def test_missing_prompt_column(tmp_path, make_cfg):
    (tmp_path / "x.json").write_text(json.dumps([{"question": "q", "output": "a"}]))
    info = {"x": {"file_name": "x.json"}, "t": {"file_name": "x.json", "columns": {"prompt": "question"}}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    assert load_error(["x"], make_cfg(dataset_dir=str(tmp_path))) == (
        f"dataset 'x' ({tmp_path}/x.json): the data has no 'instruction' column for the prompt. Its columns are: "
        f"question, output. Name the prompt column with columns.prompt in {tmp_path}/dataset_info.json, or set "
        "formatting: sharegpt for conversations")
    assert "no column is set for the response" in load_error(["t"], make_cfg(dataset_dir=str(tmp_path)))


# ---------------------------------------------------------------------------------------- sampling, mixing


@pytest.fixture
def numbered(tmp_path):
    for name, count in (("a", 6), ("b", 3)):
        rows = [{"instruction": f"{name}{i}", "output": "x"} for i in range(count)]
        (tmp_path / f"{name}.json").write_text(json.dumps(rows))
    (tmp_path / "dataset_info.json").write_text(json.dumps({
        "a": {"file_name": "a.json"}, "b": {"file_name": "b.json"},
        "a8": {"file_name": "a.json", "num_samples": 8}}))
    return str(tmp_path)


def prompts(dataset):
    return [row["prompt"][0]["content"] for row in dataset]


def test_max_samples_keeps_the_first_rows_of_each_dataset(make_cfg, numbered):
    dataset, reports = load(["a", "b"], make_cfg(dataset_dir=numbered, max_samples=2))
    assert prompts(dataset) == ["a0", "a1", "b0", "b1"] and [r.total for r in reports] == [2, 2]


def test_num_samples_is_a_seeded_sample_with_every_row_then_repeats(make_cfg, numbered):
    import numpy as np

    dataset, _ = load(["a8"], make_cfg(dataset_dir=numbered))
    rng = np.random.RandomState(42)
    expected = list(rng.permutation(6)) + list(rng.choice(6, 2))
    assert prompts(dataset) == [f"a{i}" for i in expected]
    assert sorted(set(prompts(dataset))) == [f"a{i}" for i in range(6)]


def test_mix_strategies(make_cfg, numbered):
    concat, _ = load(["a", "b"], make_cfg(dataset_dir=numbered))
    assert prompts(concat) == [f"a{i}" for i in range(6)] + [f"b{i}" for i in range(3)]
    under, _ = load(["a", "b"], make_cfg(dataset_dir=numbered, mix_strategy="interleave_under"))
    assert prompts(under) == ["a0", "b0", "a1", "b1", "a2", "b2"]
    over, _ = load(["a", "b"], make_cfg(dataset_dir=numbered, mix_strategy="interleave_over"))
    assert prompts(over) == ["a0", "b0", "a1", "b1", "a2", "b2", "a3", "b0", "a4", "b1", "a5", "b2"]
    once, _ = load(["a", "b"], make_cfg(dataset_dir=numbered, mix_strategy="interleave_once",
                                        interleave_probs="0.5,0.5"))
    assert sorted(prompts(once)) == sorted(prompts(concat))


def test_interleave_probs_must_match_the_datasets(make_cfg, numbered):
    with pytest.raises(ConfigError) as caught:
        load(["a", "b"], make_cfg(dataset_dir=numbered, mix_strategy="interleave_under", interleave_probs="1.0"))
    assert str(caught.value) == ("interleave_probs: 1 values for 2 datasets; give one probability per dataset, in "
                                 "the order of `dataset`")


def test_streaming_validates_lazily_and_reports_the_probe(make_cfg):
    from datasets import IterableDataset

    dataset, [report] = load(["alpaca_mixed"], make_cfg(streaming=True))
    assert isinstance(dataset, IterableDataset)
    assert [row["response"][0]["content"] for row in dataset] == ["Blue.", "5", "Apple."]
    assert report.partial and (report.total, report.invalid) == (6, 3)
    assert report.format().startswith("dataset 'alpaca_mixed' (train, ") and "first 6 rows checked (streaming)" in \
        report.format()


def test_path_dataset_end_to_end(tmp_path, make_cfg):
    (tmp_path / "my.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in ("one", "", "three")))
    dataset, [report] = load([str(tmp_path / "my.jsonl")], make_cfg(), stage="pt")
    assert prompts(dataset) == ["one", "three"]
    assert report.examples == [RowProblem(str(tmp_path / "my.jsonl"), 1, "text",
                                          "'text' is empty: the row has no user text")]


# ------------------------------------------------------------------------------ LLaMA-Factory demo datasets

STAGES = {"dpo_en_demo": "dpo", "dpo_zh_demo": "dpo", "kto_en_demo": "kto", "c4_demo": "pt", "wiki_demo": "pt"}


def local_demo_datasets():
    if not (LF_DEMO / "dataset_info.json").is_file():
        return []
    info = json.loads((LF_DEMO / "dataset_info.json").read_text())
    return [name for name, entry in info.items()
            if "file_name" in entry and not any(k.endswith("_url") for k in entry)
            and (LF_DEMO / entry["file_name"]).exists()]


@pytest.mark.skipif(not local_demo_datasets(), reason="LLaMA-Factory demo data is not on this machine")
def test_every_local_lf_demo_dataset_loads_without_invalid_rows(make_cfg):
    for name in local_demo_datasets():
        dataset, [report] = load([name], make_cfg(dataset_dir=str(LF_DEMO)), STAGES.get(name, "sft"))
        assert report.invalid == 0, report.format()
        assert len(dataset) == report.total > 0, name


# ------------------------------------------------------------------------- malformed rows (structure)


def tmp_dataset(tmp_path, rows, entry, **keys):
    """A config whose dataset 'd' is `rows` written as JSON lines, with dataset_info entry `entry`."""
    from tuneforge.config.loader import make_config

    (tmp_path / "d.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"d": {"file_name": "d.jsonl", **entry}}))
    return make_config({"dataset_dir": str(tmp_path), "cache_dir": str(tmp_path / "cache"), **keys})


def tmp_malformed_error(tmp_path, count, problem):
    return (f"dataset 'd': {count}; the first is {tmp_path}/d.jsonl {problem}. A value of the wrong type or a "
            "string that does not parse means the file was written wrongly: fix the file (or the columns/tags/"
            f"formatting in {tmp_path}/dataset_info.json), or set skip_invalid_rows: true to skip such rows and "
            "count them in the report")


GOOD = {"instruction": "q", "output": "a"}
CHAT = [user("hi"), assistant("hello")]
HISTORY = {"columns": {"prompt": "instruction", "response": "output", "history": "history"}}
TOOLS = {"columns": {"prompt": "instruction", "response": "output", "tools": "tools"}}
OPENAI = {"formatting": "sharegpt", "columns": {"messages": "messages"},
          "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}


@pytest.mark.parametrize("rows, entry, problem", [
    ([GOOD, {**GOOD, "history": [["q0", "a0"], ["only one"]]}], HISTORY,
     "row 1, field 'history[1]': must be a pair [instruction, response] of texts, found list [\"only one\"]"),
    ([GOOD, GOOD, {**GOOD, "history": "q0 a0"}], HISTORY,
     "row 2, field 'history': history must be a list of [instruction, response] pairs, found str \"q0 a0\""),
    ([{**GOOD, "tools": "[]"}, {**GOOD, "tools": "[{'name': 'f'}]"}], TOOLS,
     "row 1, field 'tools': tools is not valid JSON (Expecting property name enclosed in double quotes at "
     "character 2); it must be a JSON list of function descriptions"),
    ([{"messages": CHAT}, {"messages": "hi / hello"}], OPENAI,
     "row 1, field 'messages': must be a non-empty list of messages, found str \"hi / hello\""),
    ([{"messages": CHAT}, {"messages": ["hi", "hello"]}], OPENAI,
     "row 1, field 'messages[0]': must be a message object with 'role' and 'content', found str \"hi\""),
])
def test_a_malformed_row_stops_the_run_naming_file_row_and_field(tmp_path, rows, entry, problem):
    message = load_error(["d"], tmp_dataset(tmp_path, rows, entry))
    assert message == tmp_malformed_error(tmp_path, "1 malformed row", problem)
    dataset, [report] = load(["d"], tmp_dataset(tmp_path, rows, entry, skip_invalid_rows=True))
    assert (len(dataset), report.invalid, report.malformed) == (len(rows) - 1, 1, 1)


def test_an_object_among_strings_names_only_its_row(tmp_path):
    """A function call given as an object in one row: the rows whose content is a string stay valid."""
    call = {"name": "weather", "arguments": {"city": "Paris"}}
    rows = [{"messages": CHAT}, {"messages": [user("weather?"), {"role": "assistant", "content": call}]},
            {"messages": [user("bye"), assistant("see you")]}]
    message = load_error(["d"], tmp_dataset(tmp_path, rows, OPENAI))
    assert message == tmp_malformed_error(
        tmp_path, "1 malformed row", "row 1, field 'messages[1]': must be text, found dict {\"name\": \"weather\", "
        "\"arguments\": {\"city\": \"Paris\"}}")
    dataset, [report] = load(["d"], tmp_dataset(tmp_path, rows, OPENAI, skip_invalid_rows=True))
    assert [row["response"] for row in dataset] == [[assistant("hello")], [assistant("see you")]]
    assert report.format().splitlines()[0] == (
        f"dataset 'd' (train, {tmp_path}/d.jsonl): 3 rows, 1 invalid and skipped, 1 of them malformed "
        "(skip_invalid_rows) (by field: messages[1]: 1)")


def test_content_problems_are_skipped_without_skip_invalid_rows(tmp_path):
    rows = [GOOD, {"instruction": "q", "output": ""}, {"instruction": "q", "output": None}]
    dataset, [report] = load(["d"], tmp_dataset(tmp_path, rows, {}))
    assert (len(dataset), report.invalid, report.malformed) == (1, 2, 0)


def test_streaming_stops_on_a_malformed_row_in_the_probe(tmp_path):
    rows = [GOOD, {**GOOD, "history": "x"}]
    message = load_error(["d"], tmp_dataset(tmp_path, rows, HISTORY, streaming=True,
                                            max_steps=1))
    assert message == (
        f"dataset 'd': 1 malformed row among the first rows checked (streaming); the first is {tmp_path}/d.jsonl "
        "row 1, field 'history': history must be a list of [instruction, response] pairs, found str \"x\". A value "
        "of the wrong type or a string that does not parse means the file was written wrongly: fix the file (or "
        f"the columns/tags/formatting in {tmp_path}/dataset_info.json), or set skip_invalid_rows: true to skip "
        "such rows and count them in the report")
