"""Stage grpo's prompts (data/prompt_rows.py): the token ids SFT trains the answer after, the answer as
`solution`, and the file's other columns kept for the reward functions."""

import json

import pytest

from tuneforge.config import make_config
from tuneforge.data.pipeline import get_dataset, load_tokenizer_and_template
from tuneforge.data.prompt_rows import load_prompt_rows

IGNORE = -100
TOOLS = json.dumps([{"name": "add", "description": "Add two numbers",
                     "parameters": {"type": "object", "properties": {"a": {"type": "number"}}}}])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("grpo_rows")
    rows = [{"instruction": f"What is {i} + {i}?", "output": str(2 * i), "system": "Answer briefly.",
             "tools": TOOLS if i % 2 else "", "difficulty": "easy" if i < 3 else "hard"} for i in range(6)]
    (path / "math.json").write_text(json.dumps(rows))
    (path / "dataset_info.json").write_text(json.dumps({"math": {
        "file_name": "math.json", "columns": {"prompt": "instruction", "response": "output", "system": "system",
                                              "tools": "tools"}}}))
    return path


def config(model_dir, data_dir, stage, template, **values):
    return make_config({"model_name_or_path": str(model_dir), "stage": stage, "do_train": True,
                        "finetuning_type": "lora", "dataset": "math", "dataset_dir": str(data_dir),
                        "template": template, "cutoff_len": 2048, "report_to": "none", "overwrite_cache": True,
                        **({"reward_funcs": "accuracy"} if stage == "grpo" else {}), **values})


@pytest.mark.parametrize("template, values", [("qwen", {}), ("qwen3", {"enable_thinking": False})])
def test_prompt_ids_equal_the_prompt_sft_trains_the_answer_after(tiny_qwen2_dir, data_dir, tmp_path, template,
                                                                  values):
    sft_cfg = config(tiny_qwen2_dir, data_dir, "sft", template, output_dir=str(tmp_path / "sft"), **values)
    tokenizer, tmpl = load_tokenizer_and_template(sft_cfg)
    sft = get_dataset(sft_cfg, tokenizer, tmpl).train_dataset
    sft_prompts = [ids[: next(i for i, label in enumerate(labels) if label != IGNORE)]
                   for ids, labels in zip(sft["input_ids"], sft["labels"])]

    grpo_cfg = config(tiny_qwen2_dir, data_dir, "grpo", template, output_dir=str(tmp_path / "grpo"), **values)
    tokenizer, tmpl = load_tokenizer_and_template(grpo_cfg)
    rows = load_prompt_rows(grpo_cfg, tokenizer, tmpl, max_completion_length=32)
    assert [row.prompt_ids for row in rows] == sft_prompts
    text = tokenizer.decode(rows[1].prompt_ids)
    assert "Answer briefly." in text and '"name": "add"' in text  # system and tools rendered by the template


def test_the_answer_is_the_solution_and_other_columns_are_kept(tiny_qwen2_dir, data_dir, tmp_path):
    cfg = config(tiny_qwen2_dir, data_dir, "grpo", "qwen", output_dir=str(tmp_path))
    tokenizer, tmpl = load_tokenizer_and_template(cfg)
    rows = load_prompt_rows(cfg, tokenizer, tmpl, max_completion_length=32)
    assert [row.solution for row in rows] == ["0", "2", "4", "6", "8", "10"]
    columns = rows[4].columns()
    assert columns["difficulty"] == "hard" and columns["solution"] == "8" and columns["system"] == "Answer briefly."
    assert columns["messages"] == [{"role": "user", "content": "What is 4 + 4?"}]
    assert rows[1].columns()["tools"] == TOOLS
