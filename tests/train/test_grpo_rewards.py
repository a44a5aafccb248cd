"""GRPO's reward functions (train/rewards/): the built-ins' values, user functions called TRL's way, and the
errors a misbehaving function or a config that cannot work stops the run with."""

import json
import math

import pytest

from tuneforge.config import make_config
from tuneforge.data.templates.registry import TEMPLATES
from tuneforge.data.templates.tool_formats import FORMATS, FunctionCall
from tuneforge.errors import ConfigError
from tuneforge.train.rewards import (RewardBatch, RewardError, build_reward_funcs, check_reward_funcs,
                                     score)
from tuneforge.train.rewards.builtin import Accuracy, Format, SoftOverlong, ToolCall
from tuneforge.train.stages.grpo.checks import check_grpo_settings

THINK = ("<think>\n", "\n</think>\n\n")


def rlhf(**values):
    return make_config({"stage": "grpo", "do_train": True, "dataset": "x", "report_to": "none",
                        **values}).rlhf


def test_accuracy_compares_the_answer_after_the_thinking_as_mathematics():
    accuracy = Accuracy(THINK)
    completions = ["<think>\n3 of 4 is 1 - 1/4\n</think>\n\nThe answer is 0.75", "<think>\n0.75?\n</think>\n\n1/2",
                   "\\frac{3}{4}", "no idea", "42", "20 + 9 is 21.", "so \\boxed{29}", "20 + 9 = 29"]
    rewards = accuracy(completions=completions, solution=["3/4", "3/4", "$\\frac{3}{4}$", "3/4", "hello world",
                                                          "29", "29", "29"])
    # the thought's 0.75 does not count for row 1; a solution that is not mathematics: None (does not apply);
    # restating the question ("20 + 9") earns nothing: the last number is the answer
    assert rewards == [1.0, 0.0, 1.0, 0.0, None, 0.0, 1.0, 1.0]


def test_format_wants_a_thinking_block_then_an_answer():
    fmt = Format(THINK)
    assert fmt(completions=["<think>\nhmm\n</think>\n\n42", "42", "<think>\nhmm\n</think>\n", "x <think>a</think> b"]) \
        == [1.0, 0.0, 0.0, 0.0]
    assert Format(("[THINK]", "[/THINK]"))(completions=["[THINK]a[/THINK] b"]) == [1.0]  # the template's words


def test_tool_call_parses_with_the_templates_tool_format_and_checks_the_rows_tools():
    template = TEMPLATES["qwen"]
    tools = json.dumps([{"name": "get_weather", "description": "Weather of a city",
                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                        "required": ["city"]}}])
    fmt = FORMATS[template.tool_format]
    good = fmt.format_calls([FunctionCall("get_weather", json.dumps({"city": "Paris"}))])
    unknown = fmt.format_calls([FunctionCall("get_time", json.dumps({"city": "Paris"}))])
    missing = fmt.format_calls([FunctionCall("get_weather", json.dumps({"town": "Paris"}))])
    reward = ToolCall(template)
    assert reward(completions=[good, unknown, missing, "It is sunny.", good], tools=[tools] * 4 + [""]) \
        == [1.0, 0.0, 0.0, 0.0, None]  # a row without tools: not applicable


def test_length_is_dapos_soft_overlong_penalty():
    penalty = SoftOverlong(max_length=10, cache_length=4)
    ids = [[0] * n for n in (3, 6, 8, 10, 12)]
    assert penalty(completion_ids=ids) == [0.0, 0.0, -0.5, -1.0, -1.0]  # linear from 6 to 10 tokens


@pytest.fixture
def user_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_rewards.py").write_text('''
seen = {}
def echo_kwargs(prompts, completions, **kwargs):
    seen.update(kwargs, prompts=prompts)
    return [float(len(c)) for c in completions]
def raises(completions, **kwargs):
    raise ValueError("boom")
def too_few(completions, **kwargs):
    return [1.0]
def nan_for_second(completions, **kwargs):
    return [1.0, float("nan")]
def none_for_second(completions, **kwargs):
    return [1.0, None]
''')
    return "my_rewards.py"


def batch(**columns):
    return RewardBatch(prompts=["p1", "p2"], completions=["ab", "abcd"], completion_ids=[[1], [2, 3]],
                       prompt_ids=[[9], [8]], rows=[7, 12], columns={"solution": ["1", "2"], **columns})


def funcs_for(names, **values):
    cfg = make_config({"stage": "grpo", "do_train": True, "dataset": "x", "report_to": "none",
                       "reward_funcs": names, **values})
    return build_reward_funcs(cfg, TEMPLATES["default"], policy=None, tokenizer=None)


def test_user_functions_get_prompts_completions_and_every_column(user_file):
    funcs = funcs_for(f"{user_file}:echo_kwargs,{user_file}:none_for_second")
    rewards = score(funcs, batch(difficulty=["easy", "hard"]))
    assert rewards[:, 0].tolist() == [2.0, 4.0]
    assert rewards[0, 1].item() == 1.0 and math.isnan(rewards[1, 1].item())  # None: NaN, left out of the sum
    import os
    import sys

    # The module loaded from this test's file (other tests load reward files of their own).
    seen = next(m for name, m in sys.modules.items() if name.startswith("tuneforge_reward_")
                and os.path.abspath(getattr(m, "__file__", "")) == os.path.abspath(str(user_file))).seen
    assert seen["prompts"] == ["p1", "p2"] and seen["difficulty"] == ["easy", "hard"]
    assert seen["solution"] == ["1", "2"] and seen["completion_ids"] == [[1], [2, 3]]


@pytest.mark.parametrize("function, message", [
    ("raises", "reward function my_rewards.py:raises raised ValueError: boom while scoring dataset rows 7, 12"),
    ("too_few", "reward function my_rewards.py:too_few returned 1 values for 2 completions (dataset rows 7, 12)"),
    ("nan_for_second", "reward function my_rewards.py:nan_for_second returned nan for dataset row 12"),
])
def test_a_misbehaving_reward_function_stops_the_run_naming_function_row_and_value(user_file, function, message):
    funcs = funcs_for(f"{user_file}:{function}")
    with pytest.raises(RewardError) as caught:
        score(funcs, batch())
    assert message in str(caught.value)


@pytest.mark.parametrize("values, message", [
    ({}, "stage grpo needs reward_funcs"),
    ({"reward_funcs": "accuracy,nope"}, "'nope' is neither a built-in"),
    ({"reward_funcs": "missing.py:f"}, "missing.py does not exist"),
    ({"reward_funcs": "accuracy,format", "reward_weights": "1.0"}, "reward_weights: 1 weights for 2 reward_funcs"),
    ({"reward_funcs": "reward_model"}, "list `reward_model` in reward_funcs and set the reward_model key"),
    ({"reward_funcs": "length"}, "length (DAPO's soft overlong penalty) needs soft_cache_length"),
])
def test_reward_settings_are_checked_before_anything_loads(values, message):
    with pytest.raises(ConfigError, match=None) as caught:
        check_reward_funcs(rlhf(**values))
    assert message in str(caught.value)


def test_a_user_file_without_the_function_is_a_config_error(user_file):
    with pytest.raises(ConfigError, match="my_rewards.py has no function 'absent'"):
        check_reward_funcs(rlhf(reward_funcs=f"{user_file}:absent"))


def test_weights_combine_and_default_to_one():
    from tuneforge.train.rewards import reward_weights

    assert reward_weights(rlhf(reward_funcs="format,length", soft_cache_length=4), 2).tolist() == [1.0, 1.0]
    assert reward_weights(rlhf(reward_funcs="format,length", reward_weights="0.5,2"), 2).tolist() == [0.5, 2.0]


def test_vllm_on_cpu_is_refused_before_anything_loads(tmp_path):
    cfg = make_config({"stage": "grpo", "do_train": True, "dataset": "x", "report_to": "none",
                       "reward_funcs": "format", "use_vllm": True, "output_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="use_vllm: vLLM generates on CUDA GPUs only, and this machine trains on cpu"):
        check_grpo_settings(cfg)


def test_accuracy_without_an_answer_column_is_a_config_error(tmp_path):
    (tmp_path / "q.json").write_text(json.dumps([{"question": "1+1?"}]))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"q": {"file_name": "q.json",
                                                                  "columns": {"prompt": "question"}}}))
    cfg = make_config({"stage": "grpo", "do_train": True, "dataset": "q", "dataset_dir": str(tmp_path),
                       "report_to": "none", "reward_funcs": "accuracy", "output_dir": str(tmp_path / "out")})
    with pytest.raises(ConfigError, match="dataset 'q' has no answer column"):
        check_grpo_settings(cfg)


def test_grpo_keys_are_refused_for_other_stages():
    with pytest.raises(ConfigError, match="num_generations only applies to stage grpo"):
        make_config({"stage": "sft", "do_train": True, "dataset": "x", "num_generations": 4})




def test_rows_without_a_solution_stop_an_accuracy_run_naming_them():
    from tuneforge.data.prompt_rows import PromptRow
    from tuneforge.train.stages.grpo.checks import check_solutions

    rows = [PromptRow(index, [1], solution, "", "", []) for index, solution in enumerate(["1", None, "3", ""])]
    with pytest.raises(ConfigError, match=r"2 rows have none \(dataset rows 1, 3\)"):
        check_solutions(rlhf(reward_funcs="accuracy,format"), rows)
    check_solutions(rlhf(reward_funcs="format"), rows)  # format needs no solution
