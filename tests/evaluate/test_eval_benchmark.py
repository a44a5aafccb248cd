"""`tuneforge eval`: a model rigged to give a known answer sheet gets exactly the accuracy per subject, category
and on average that the sheet implies; prompts are LLaMA-Factory's; the public layouts (MMLU folder, C-Eval
header, CMMLU names, zip) are read; results land in save_dir; mistakes stop before the weights load."""

import json
import zipfile

import pytest
import torch
import yaml

from tuneforge import cli
from tuneforge.config import make_config
from tuneforge.data.pipeline import load_tokenizer_and_template
from tuneforge.errors import ConfigError, DataError
from tuneforge.evaluate import run_eval
from tuneforge.evaluate.tasks import load_task, parse_csv

# The rig's answer sheet for the bundled mmlu_sample_test: right except where marked.
SHEET = {
    "What is 2 + 2?": "B", "What is 7 - 5?": "A", "What is 6 * 7?": "A",  # wrong (C)
    "What is 100 / 4, as a whole number?": "D",
    "What is the capital of France?": "B", "What is the capital of Japan?": "D",
    "What is the capital of Canada?": "A",
    "Who wrote War and Peace?": "C", "Who wrote Don Quixote?": "B",  # wrong (A)
}


class AnswerSheetModel(torch.nn.Module):
    """Logits that name the sheet's letter at the last real token of each row, and a decoy letter (D)
    everywhere else, padding included: reading the wrong position gives a different score."""

    def __init__(self, tokenizer):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.tokenizer = tokenizer
        self.letter_ids = {ch: tokenizer.encode(ch, add_special_tokens=False)[-1] for ch in "ABCD"}
        self.prompts = []

    def forward(self, input_ids, attention_mask):
        logits = torch.zeros(*input_ids.shape, len(self.tokenizer))
        logits[:, :, self.letter_ids["D"]] = 50.0
        for row in range(input_ids.shape[0]):
            length = int(attention_mask[row].sum())
            text = self.tokenizer.decode(input_ids[row, :length])
            self.prompts.append(text)
            question = max(SHEET, key=text.rfind)  # the question asked last in the prompt
            logits[row, length - 1, :] = 0.0
            logits[row, length - 1, self.letter_ids[SHEET[question]]] = 10.0
        return type("Output", (), {"logits": logits})()


def _cfg(model_dir, **values):
    """The values of an eval config for a tiny model; the task comes from the bundled samples (task_dir
    does not exist)."""
    return {"model_name_or_path": str(model_dir), "template": "qwen", "task": "mmlu_sample_test",
            "task_dir": str(model_dir / "no_such_dir"), "n_shot": 1, "batch_size": 2, **values}


def test_rigged_model_scores_its_answer_sheet(tiny_llama_dir, tmp_path, capsys):
    cfg = make_config(_cfg(tiny_llama_dir, save_dir=str(tmp_path / "results")))
    tokenizer, template = load_tokenizer_and_template(cfg)
    model = AnswerSheetModel(tokenizer)
    scores = run_eval(cfg, model=model, tokenizer=tokenizer, template=template)

    assert scores["subjects"] == {"elementary_arithmetic": 75.0, "world_capitals": 100.0, "famous_authors": 50.0}
    assert scores["categories"] == pytest.approx({"Average": 700 / 9, "STEM": 75.0, "Social Sciences": 100.0,
                                                  "Humanities": 50.0})
    out = capsys.readouterr().out
    assert "        Average: 77.78\n           STEM: 75.00\n" in out
    saved = json.loads((tmp_path / "results" / "results.json").read_text())
    assert saved["elementary_arithmetic"] == {"0": "B", "1": "A", "2": "A", "3": "D"}
    assert (tmp_path / "results" / "results.log").read_text().splitlines()[0] == "        Average: 77.78"

    # LLaMA-Factory's prompt: subject line, one answered dev question, then the question, in the chat template.
    authors = next(p for p in model.prompts if "War and Peace" in p)
    assert authors == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nThe following are multiple choice questions (with answers) about famous authors.\n\n"
        "Who wrote Hamlet?\nA. Dickens\nB. Shakespeare\nC. Austen\nD. Twain\nAnswer:<|im_end|>\n"
        "<|im_start|>assistant\nB<|im_end|>\n"
        "<|im_start|>user\nWho wrote War and Peace?\nA. Dostoevsky\nB. Chekhov\nC. Tolstoy\nD. Gogol\nAnswer:"
        "<|im_end|>\n<|im_start|>assistant\n")


def test_chinese_prompt_and_zero_shot(tiny_llama_dir):
    cfg = make_config(_cfg(tiny_llama_dir, lang="zh", n_shot=0, batch_size=4))
    tokenizer, template = load_tokenizer_and_template(cfg)
    model = AnswerSheetModel(tokenizer)
    assert run_eval(cfg, model=model, tokenizer=tokenizer, template=template)["categories"]["Average"] == \
        pytest.approx(700 / 9)
    assert "<|im_start|>user\n以下是中国关于elementary arithmetic考试的单项选择题，请选出其中的正确答案。\n\nWhat is 2 + 2?" \
        in model.prompts[0]
    assert model.prompts[0].endswith("\nD. 22\n答案：<|im_end|>\n<|im_start|>assistant\n")


def test_cli_eval_with_a_real_model_saves_consistent_results(tiny_llama_dir, tmp_path):
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(_cfg(tiny_llama_dir, save_dir=str(tmp_path / "out"))))
    assert cli.main(["eval", str(path)]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    task = load_task("nowhere", "mmlu_sample_test")
    right = [results[key][str(i)] == q.answer for key, subject in task.subjects.items()
             for i, q in enumerate(subject.questions)]
    assert scores["categories"]["Average"] == pytest.approx(100 * sum(right) / 9)
    assert cli.main(["eval", str(path)]) == 2  # save_dir now exists: refused before loading anything


def test_public_layouts_are_read(tmp_path):
    # C-Eval: <dir>/<subject>_<dir>.csv with a header (id first, explanation last), inside ceval/ceval.zip.
    ceval = tmp_path / "ceval"
    ceval.mkdir()
    with zipfile.ZipFile(ceval / "ceval.zip", "w") as archive:
        archive.writestr("mapping.json", json.dumps({"logic": {"name": "逻辑学", "category": "Humanities"}}))
        archive.writestr("val/logic_val.csv", "id,question,A,B,C,D,answer\n0,问题一,甲,乙,丙,丁,C\n")
        archive.writestr("dev/logic_dev.csv", "id,question,A,B,C,D,answer,explanation\n0,例题,甲,乙,丙,丁,A,因为\n")
    task = load_task(str(tmp_path), "ceval_validation")
    logic = task.subjects["logic"]
    assert (logic.name, logic.questions[0].question, logic.questions[0].answer) == ("逻辑学", "问题一", "C")
    assert logic.shots[0].options == {"A": "甲", "B": "乙", "C": "丙", "D": "丁"}
    # CMMLU: <dir>/<subject>.csv, header with an unnamed index column and capitalised names.
    assert parse_csv(",Question,A,B,C,D,Answer\n0,q,a,b,c,d,b\n", "x.csv")[0].answer == "B"


def test_bad_tasks_are_reported_with_the_fix(tiny_llama_dir, tmp_path):
    with pytest.raises(ConfigError, match="<benchmark>_<split>"):
        run_eval(make_config(_cfg(tiny_llama_dir, task="mmlu")))
    with pytest.raises(ConfigError) as error:  # validate_config's problems and the evaluation's, in one error
        run_eval(make_config(_cfg(tiny_llama_dir, template="qwenn", n_shot=-1)))
    assert [problem.split(";")[0] for problem in error.value.problems] == [
        "template: unknown template 'qwenn'", "n_shot: -1 must be 0 or more"]
    with pytest.raises(ConfigError, match="task folders found in"):
        run_eval(make_config(_cfg(tiny_llama_dir, task="mmlu_test", task_dir=str(tmp_path))))
    with pytest.raises(DataError, match=r"x.csv, line 2: answer 'E' is not one of A, B, C, D"):
        parse_csv("q,a,b,c,d,A\nq2,a,b,c,d,E\n", "x.csv")
