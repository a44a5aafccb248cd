"""Format converters: one raw row -> the canonical row, or InvalidRow(field, reason).

Expected outputs were checked against LLaMA-Factory 0.9.5's converters on the same rows.
"""

import json

import pytest

from tuneforge.data.formats import InvalidRow, convert_row
from tuneforge.data.formats.infer import infer_entry
from tuneforge.data.registry import attr_from_entry
from tuneforge.errors import DataError

U, A, F, O = "user", "assistant", "function", "observation"
ROLE_CONTENT = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}


def attr(entry=None):
    return attr_from_entry("d", {"file_name": "ignored", **(entry or {})}, "dataset_info.json", ".")


@pytest.fixture(autouse=True)
def _file_exists(tmp_path, monkeypatch):
    # attr_from_entry checks file_name exists relative to dataset_dir ("."): run inside a folder holding it.
    (tmp_path / "ignored").write_text("[]")
    monkeypatch.chdir(tmp_path)


def msg(role, content):
    return {"role": role, "content": content}


def convert(entry, row):
    return convert_row(row, attr(entry))


def invalid(entry, row):
    with pytest.raises(InvalidRow) as caught:
        convert(entry, row)
    return caught.value.field, caught.value.reason


# ------------------------------------------------------------------------------------------------ alpaca


def test_alpaca_joins_instruction_and_input_with_a_newline():
    out = convert(None, {"instruction": "Do it", "input": "now", "output": "ok"})
    assert out["prompt"] == [msg(U, "Do it\nnow")]
    assert out["response"] == [msg(A, "ok")]
    assert (out["system"], out["tools"]) == ("", "")
    assert (out["images"], out["videos"], out["audios"]) == (None, None, None)  # raw media: resolved by checks


def test_alpaca_empty_input_or_instruction_is_left_out():
    assert convert(None, {"instruction": "Do it", "input": "", "output": "ok"})["prompt"] == [msg(U, "Do it")]
    assert convert(None, {"instruction": "", "input": "only", "output": "ok"})["prompt"] == [msg(U, "only")]


def test_alpaca_history_system_and_tools():
    entry = {"columns": {"prompt": "instruction", "query": "input", "response": "output", "history": "history",
                         "system": "system", "tools": "tools"}}
    row = {"instruction": "Q", "input": "I", "output": "A", "history": [["h1", "r1"], ["h2", "r2"]],
           "system": "sys", "tools": "[]"}
    out = convert(entry, row)
    assert out["prompt"] == [msg(U, "h1"), msg(A, "r1"), msg(U, "h2"), msg(A, "r2"), msg(U, "Q\nI")]
    assert out["response"] == [msg(A, "A")]
    assert (out["system"], out["tools"]) == ("sys", "[]")
    nulls = convert(entry, {"instruction": "Q", "input": None, "output": "A", "history": None, "system": None,
                            "tools": None})
    assert nulls["prompt"] == [msg(U, "Q")] and (nulls["system"], nulls["tools"]) == ("", "")


def test_alpaca_pretraining_text_is_a_user_turn_without_response():
    out = convert({"columns": {"prompt": "text"}}, {"text": "Once upon a time."})
    assert out["prompt"] == [msg(U, "Once upon a time.")] and out["response"] == []


def test_alpaca_preference_and_kto():
    ranking = {"ranking": True, "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen",
                                            "rejected": "rejected"}}
    out = convert(ranking, {"instruction": "Q", "input": "I", "chosen": "good", "rejected": "bad"})
    assert out["prompt"] == [msg(U, "Q\nI")] and out["response"] == [msg(A, "good"), msg(A, "bad")]

    kto = {"columns": {"prompt": "instruction", "response": "output", "kto_tag": "label"}}
    assert convert(kto, {"instruction": "Q", "output": "A", "label": True})["response"] == [msg(A, "A"), msg(A, "")]
    assert convert(kto, {"instruction": "Q", "output": "B", "label": False})["response"] == [msg(A, ""), msg(A, "B")]


def test_alpaca_invalid_rows_name_field_and_reason():
    assert invalid(None, {"instruction": "", "input": None, "output": "x"}) == (
        "instruction", "'instruction' and 'input' are empty: the row has no user text")
    assert invalid(None, {"instruction": 5, "input": "", "output": "x"}) == ("instruction", "must be text, found int 5")
    assert invalid({"columns": {"prompt": "q", "history": "h"}}, {"q": "x", "h": [["only one"]]}) == (
        "h[0]", 'must be a pair [instruction, response] of texts, found list ["only one"]')
    kto = {"columns": {"prompt": "instruction", "response": "output", "kto_tag": "label"}}
    assert invalid(kto, {"instruction": "Q", "output": "A", "label": "yes"}) == (
        "label", 'kto_tag must be a boolean (true or false), found str "yes"')


# ---------------------------------------------------------------------------------------------- sharegpt

SHAREGPT = {"formatting": "sharegpt", "columns": {"messages": "conversations", "tools": "tools", "system": "system"}}


def test_sharegpt_system_message_tools_function_call_and_observation():
    row = {"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "u1"},
                             {"from": "function_call", "value": '{"name": "f"}'},
                             {"from": "observation", "value": "obs"},
                             {"from": "gpt", "value": "done"}], "tools": '[{"name": "f"}]', "system": "colsys"}
    out = convert(SHAREGPT, row)
    assert out["prompt"] == [msg(U, "u1"), msg(F, '{"name": "f"}'), msg(O, "obs")]
    assert out["response"] == [msg(A, "done")]
    assert (out["system"], out["tools"]) == ("S", '[{"name": "f"}]')
    plain = convert(SHAREGPT, {"conversations": [{"from": "human", "value": "u"}, {"from": "gpt", "value": "a"}],
                               "tools": None, "system": "colsys"})
    assert plain["system"] == "colsys" and plain["tools"] == ""  # no system message: the system column


def test_sharegpt_role_order_and_count_errors():
    rows = {
        "gpt first": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "u"}],
        "ends with human": [{"from": "human", "value": "u"}, {"from": "gpt", "value": "a"},
                            {"from": "human", "value": "v"}],
        "two humans": [{"from": "human", "value": "u"}, {"from": "human", "value": "v"}],
    }
    assert invalid(SHAREGPT, {"conversations": rows["gpt first"]}) == (
        "conversations[0]", "message 1 has role 'gpt' but must be 'human' or 'observation': messages alternate "
        "human/observation and gpt/function_call, starting with human/observation")
    assert invalid(SHAREGPT, {"conversations": rows["ends with human"]}) == (
        "conversations", "ends with a 'human' message: the last message must be the answer ('gpt' or 'function_call')")
    field, reason = invalid(SHAREGPT, {"conversations": rows["two humans"]})
    assert field == "conversations[1]" and reason.startswith("message 2 has role 'human' but must be 'gpt' or")
    assert invalid(SHAREGPT, {"conversations": []}) == (
        "conversations", "must be a non-empty list of messages, found list []")
    assert invalid(SHAREGPT, {"conversations": [{"from": "system", "value": "S"}]}) == (
        "conversations", "has no messages besides the system prompt")
    assert invalid(SHAREGPT, {"conversations": [{"value": "u"}, {"from": "gpt", "value": "a"}]}) == (
        "conversations[0]", "has no 'from' (the role); keys found: value")
    # After a system message, positions count from the first non-system message but fields index the file.
    field, _ = invalid(SHAREGPT, {"conversations": [{"from": "system", "value": "S"}, {"from": "gpt", "value": "a"}]})
    assert field == "conversations[1]"


def test_sharegpt_preference():
    entry = {"formatting": "sharegpt", "ranking": True,
             "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}
    row = {"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "u"},
                             {"from": "gpt", "value": "a"}, {"from": "human", "value": "u2"}],
           "chosen": {"from": "function_call", "value": "c"}, "rejected": {"from": "gpt", "value": "r"}}
    out = convert(entry, row)
    assert out["prompt"] == [msg(U, "u"), msg(A, "a"), msg(U, "u2")]
    assert out["response"] == [msg(F, "c"), msg(A, "r")] and out["system"] == "S"
    bad = dict(row, chosen={"from": "human", "value": "c"})
    assert invalid(entry, bad) == ("chosen", "role 'human' is not an answer: expected 'gpt' or 'function_call'")
    ends_with_answer = dict(row, conversations=row["conversations"][:3])
    assert invalid(entry, ends_with_answer)[1] == (
        "ends with a 'gpt' message, but a preference conversation must end with 'human' or 'observation' "
        "(the answers are in 'chosen' and 'rejected')")


def test_sharegpt_kto_with_role_content_tags():
    entry = {"formatting": "sharegpt", "columns": {"messages": "messages", "kto_tag": "label"},
             "tags": {**ROLE_CONTENT, "system_tag": "system"}}
    row = {"messages": [msg("system", "S"), msg("user", "u"), msg("assistant", "a")], "label": False}
    out = convert(entry, row)
    assert out["prompt"] == [msg(U, "u")] and out["response"] == [msg(A, ""), msg(A, "a")]
    assert out["system"] == "S"


def test_tags_listed_replace_all_defaults():
    # LLaMA-Factory: a `tags` object unsets every tag it does not list (here system_tag), so a leading
    # "system" message is just a role that is not allowed.
    entry = {"formatting": "sharegpt", "columns": {"messages": "messages"}, "tags": ROLE_CONTENT}
    field, reason = invalid(entry, {"messages": [msg("system", "S"), msg("user", "u"), msg("assistant", "a")]})
    assert field == "messages[0]" and "has role 'system' but must be 'user'" in reason


# ------------------------------------------------------------------------------------------------ openai

OPENAI = {"formatting": "openai", "columns": {"messages": "messages", "tools": "tools"}}


def om(role, content, tool_calls=None):
    return {"role": role, "content": content, "tool_calls": tool_calls}


def call(name, arguments):
    return {"id": "1", "type": "function", "function": {"name": name, "arguments": arguments}}


def test_openai_tool_calls_merged_tool_results_and_system():
    calls = [call("f", '{"a": 1}'), call("g", "{}")]
    row = {"messages": [om("system", "S"), om("user", "u"), om("assistant", None, calls),
                        om("tool", "r1"), om("tool", "r2"), om("assistant", "final")], "tools": [{"name": "f"}]}
    out = convert(OPENAI, row)
    assert out["prompt"] == [
        msg(U, "u"),
        msg(F, '[{"name": "f", "arguments": "{\\"a\\": 1}"}, {"name": "g", "arguments": "{}"}]'),
        msg(O, "r1\n</tool_response>\n<tool_response>\nr2"),
    ]
    assert out["response"] == [msg(A, "final")]
    assert (out["system"], out["tools"]) == ("S\n", '[{"name": "f"}]')


@pytest.mark.parametrize("system, tools, expected", [
    (None, None, "detailed thinking off"),
    ("S", None, "S\ndetailed thinking off"),
    ("S detailed thinking on", None, "S detailed thinking on"),
    (None, '[{"name": "f"}]', ""),
])
def test_openai_system_prompt_gets_llamafactorys_thinking_switch(system, tools, expected):
    messages = ([om("system", system)] if system else []) + [om("user", "u"), om("assistant", "a")]
    assert convert(OPENAI, {"messages": messages, "tools": tools})["system"] == expected


def test_openai_trailing_tool_results_are_dropped_like_llamafactory():
    row = {"messages": [om("user", "u"), om("assistant", None, [call("f", "{}")]), om("tool", "r")], "tools": "[]"}
    out = convert(OPENAI, row)
    assert out["prompt"] == [msg(U, "u")] and out["response"] == [msg(F, '[{"name": "f", "arguments": "{}"}]')]


def test_openai_unknown_role_and_order():
    assert invalid(OPENAI, {"messages": [om("robot", "u"), om("assistant", "a")], "tools": None}) == (
        "messages[0]", "unknown role 'robot': expected one of 'user', 'assistant', 'tool', 'function_call', 'system'")
    assert invalid(OPENAI, {"messages": [om("assistant", "a"), om("user", "u")], "tools": None}) == (
        "messages", "turn 1 is a 'assistant' message but must be 'user' or 'tool': turns alternate user/tool "
        "results and assistant, starting with user")


# --------------------------------------------------------------------------------------------- inference


@pytest.mark.parametrize("row, expected", [
    ({"instruction": "q", "input": "", "output": "a"},
     {"columns": {"prompt": "instruction", "query": "input", "response": "output"}}),
    ({"text": "t"}, {"columns": {"prompt": "text"}}),
    ({"instruction": "q", "chosen": "c", "rejected": "r"},
     {"ranking": True, "columns": {"prompt": "instruction", "chosen": "chosen", "rejected": "rejected"}}),
    ({"conversations": [{"from": "human", "value": "u"}], "tools": "[]"},
     {"formatting": "sharegpt", "columns": {"messages": "conversations", "tools": "tools"}}),
    ({"messages": [msg("user", "u"), msg("assistant", "a")], "label": True, "images": []},
     {"formatting": "sharegpt", "tags": {**ROLE_CONTENT, "observation_tag": "observation",
                                         "function_tag": "function_call", "system_tag": "system"},
      "columns": {"messages": "messages", "kto_tag": "label", "images": "images"}}),
    ({"messages": [msg("user", "u"), om("assistant", None, [call("f", "{}")]), msg("tool", "r")]},
     {"formatting": "openai", "tags": {**ROLE_CONTENT, "observation_tag": "tool", "function_tag": "function_call",
                                       "system_tag": "system"}, "columns": {"messages": "messages"}}),
])
def test_infer_entry_from_first_row(row, expected):
    assert infer_entry(row, "d", "d.json") == expected


def test_infer_entry_unknown_columns():
    with pytest.raises(DataError) as caught:
        infer_entry({"question": "q", "answer": "a"}, "my.json", "data/my.json")
    assert str(caught.value).startswith("dataset 'my.json': cannot tell the format of data/my.json from its "
                                        "columns (question, answer). Expected 'instruction'/'input'/'output'")


def test_tools_given_as_json_objects_are_dumped():
    out = convert(SHAREGPT, {"conversations": [{"from": "human", "value": "u"}, {"from": "gpt", "value": "a"}],
                             "tools": [{"name": "f"}], "system": None})
    assert json.loads(out["tools"]) == [{"name": "f"}]
