"""`tuneforge data check` reports every data problem of issue 19 without loading a model: the model folder holds
only a tokenizer (no weights, no config.json), so any attempt to load a model would fail.

Each case: the exit code (2, a user error) and the message naming dataset, file, row or line, and field or key.
"""

import json

import pytest

from tuneforge import cli

GOOD = {"instruction": "q", "output": "a"}
USER, ASSISTANT = {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}
OPENAI = {"formatting": "sharegpt", "columns": {"messages": "messages"},
          "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}
SHAREGPT = {"formatting": "sharegpt", "columns": {"messages": "conversations"}}
HISTORY = {"columns": {"prompt": "instruction", "response": "output", "history": "history"}}
TOOLS = {"columns": {"prompt": "instruction", "response": "output", "tools": "tools"}}
PAIRS = {"ranking": True, "columns": {"prompt": "instruction", "chosen": "chosen", "rejected": "rejected"}}
KTO = {"columns": {"prompt": "instruction", "response": "output", "kto_tag": "kto_tag"}}
LONG_PROMPT = "Tell me about " + " ".join(f"topic{i}" for i in range(60)) + "."


def _jsonl(rows):
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


# name -> (file bytes, file name, dataset_info entry, extra keys, expected text in stderr ({file}: the data file))
CASES = {
    "tools-not-json": (_jsonl([{**GOOD, "tools": "[]"}, {**GOOD, "tools": "[{'name': 'f'}]"}]), "d.jsonl", TOOLS, {},
                       "{file} row 1, field 'tools': tools is not valid JSON"),
    "conversations-not-a-list": (_jsonl([{"conversations": [{"from": "human", "value": "hi"},
                                                            {"from": "gpt", "value": "hello"}]},
                                         {"conversations": "hi / hello"}]), "d.jsonl", SHAREGPT, {},
                                 "{file} row 1, field 'conversations': must be a non-empty list of messages, "
                                 "found str \"hi / hello\""),
    "messages-not-a-list": (_jsonl([{"messages": [USER, ASSISTANT]}, {"messages": "hi"}]), "d.jsonl", OPENAI, {},
                            "{file} row 1, field 'messages': must be a non-empty list of messages, found str \"hi\""),
    "history-not-a-pair": (_jsonl([GOOD, {**GOOD, "history": [["q0", "a0"], ["only one"]]}]), "d.jsonl", HISTORY,
                           {}, "{file} row 1, field 'history[1]': must be a pair [instruction, response] of texts"),
    "jsonl-line-not-json": (b'{"instruction": "q", "output": "a"}\n\n{"instruction": "q", "output": }\n', "d.jsonl",
                            {}, {}, "dataset 'd': line 3 of file {file} is not valid JSON: Expecting value (column 32)"),
    "empty-file": (b"", "d.json", {}, {}, "dataset 'd': {file} is empty (0 bytes), so it holds no rows"),
    "utf16-file": (json.dumps([GOOD]).encode("utf-16"), "d.json", {}, {},
                   "dataset 'd': {file} is encoded as UTF-16LE, but data files must be UTF-8. Convert it, e.g. "
                   "`iconv -f UTF-16LE -t UTF-8 {file} > "),
    "mixed-string-and-object": (_jsonl([{"messages": [USER, ASSISTANT]},
                                        {"messages": [USER, {"role": "assistant", "content": {"name": "f"}}]}]),
                                "d.jsonl", OPENAI, {}, "{file} row 1, field 'messages[1]': must be text, found dict"),
    "val-size-too-large": (_jsonl([GOOD] * 4), "d.jsonl", {}, {"val_size": 10},
                           "val_size: 10 asks for 10 validation rows, but the training data holds 4 rows, leaving "
                           "none to train on"),
    "all-labels-masked": (_jsonl([{"instruction": LONG_PROMPT, "output": "ok"}] * 3), "d.jsonl", {},
                          {"cutoff_len": 8}, "dataset 'd': every one of the 3 training examples has all its labels "
                                             "masked (-100) after tokenization: cutoff_len (8)"),
    "dpo-chosen-equals-rejected": (_jsonl([{"instruction": f"Q{i}", "chosen": "Yes.", "rejected": "Yes."}
                                           for i in range(3)]), "d.jsonl", PAIRS, {"stage": "dpo"},
                                   "dataset 'd': in every one of the 3 training pairs the chosen and the rejected "
                                   "answer are the same"),
    "kto-one-label": (_jsonl([{"instruction": f"Q{i}", "output": f"A{i}", "kto_tag": True} for i in range(4)]),
                      "d.jsonl", KTO, {"stage": "kto"},
                      "dataset 'd': all 4 training examples are desirable (kto_tag true); KTO learns from the "
                      "contrast"),
}


def _check(tmp_path, tiny_tokenizer_dir, content, file_name, entry, keys):
    (tmp_path / file_name).write_bytes(content)
    (tmp_path / "dataset_info.json").write_text(json.dumps({"d": {"file_name": file_name, **entry}}))
    config = tmp_path / "check.yaml"
    values = {"model_name_or_path": str(tiny_tokenizer_dir), "dataset": "d", "dataset_dir": str(tmp_path),
              "template": "qwen", "stage": "sft", "do_train": True, "finetuning_type": "lora", "cutoff_len": 64,
              "output_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"), **keys}
    config.write_text(json.dumps(values))  # JSON is YAML
    return cli.main(["data", "check", str(config)])


@pytest.fixture
def no_model_loads(monkeypatch):
    import tuneforge.model.loader as loader

    def refuse(*args, **kwargs):
        raise AssertionError("data check loaded a model")

    monkeypatch.setattr(loader, "load_model", refuse)


@pytest.mark.parametrize("case", list(CASES))
def test_data_check_reports_each_issue_19_data_problem(case, tmp_path, tiny_tokenizer_dir, capsys, no_model_loads):
    content, file_name, entry, keys, expected = CASES[case]
    code = _check(tmp_path, tiny_tokenizer_dir, content, file_name, entry, keys)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "\nerror: " in "\n" + err, err
    message = err[("\n" + err).rindex("\nerror: "):]  # what follows the progress bars and log lines
    assert "Traceback" not in message
    assert expected.format(file=tmp_path / file_name) in message, message
    assert "dataset 'd'" in message or "val_size" in message, message  # the dataset (or the key) is named


def test_skip_invalid_rows_makes_data_check_count_the_malformed_rows(tmp_path, tiny_tokenizer_dir, capsys,
                                                                     no_model_loads):
    content, file_name, entry, _, _ = CASES["tools-not-json"]
    assert _check(tmp_path, tiny_tokenizer_dir, content, file_name, entry, {"skip_invalid_rows": True}) == 0
    out = capsys.readouterr().out
    assert "2 rows, 1 invalid and skipped, 1 of them malformed (skip_invalid_rows)" in out, out
