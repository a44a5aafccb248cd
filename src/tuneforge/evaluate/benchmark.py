"""`tuneforge eval`: score a model on a multiple-choice benchmark by the logits of the answer letters.

As LLaMA-Factory 0.9.5 evaluates (facts kept so scores compare):
  - each question is a chat turn "<question>\\nA. <text>\\nB. ...\\nAnswer:" (zh: "\\n答案："); the `n_shot`
    few-shot questions of the subject's dev split come first as answered turns, and the first turn starts
    with the subject line ("The following are multiple choice questions (with answers) about <subject>.");
  - the conversation goes through the chat template (prompt up to the assistant's answer);
  - the prediction is the letter among A-D whose token (the last token of encoding the bare letter) has the
    largest logit at the prompt's last position; batches are right-padded;
  - accuracy per category (STEM, Social Sciences, Humanities, Other) and on average, ×100, printed as
    "<category>: <score>"; results.json ({subject: {index: letter}}) and results.log in `save_dir`.
tuneforge adds accuracy per subject (printed and in scores.json). Few-shot questions are drawn with `seed`
(LLaMA-Factory shuffles unseeded), so a run is repeatable.
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .tasks import CHOICES, Question, Task, load_task

if TYPE_CHECKING:
    from ..config import Config
    from ..config.groups import EvalArgs, ModelArgs

logger = logging.getLogger(__name__)

CATEGORIES = ("Average", "STEM", "Social Sciences", "Humanities", "Other")


@dataclass(frozen=True)
class EvalPrompt:
    system: str
    choice: str
    answer: str


EVAL_PROMPTS = {
    "en": EvalPrompt(system="The following are multiple choice questions (with answers) about {subject}.\n\n",
                     choice="\n{choice}. {content}", answer="\nAnswer:"),
    "zh": EvalPrompt(system="以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n",
                     choice="\n{choice}. {content}", answer="\n答案："),
}


def format_question(prompt: EvalPrompt, question: Question) -> str:
    options = "".join(prompt.choice.format(choice=letter, content=text) for letter, text in question.options.items())
    return question.question + options + prompt.answer


def build_messages(prompt: EvalPrompt, question: Question, shots: list[Question], subject_name: str) -> list[dict]:
    messages = []
    for shot in [*shots, question]:
        messages.append({"role": "user", "content": format_question(prompt, shot)})
        messages.append({"role": "assistant", "content": shot.answer})
    messages[0]["content"] = prompt.system.format(subject=subject_name) + messages[0]["content"]
    return messages


def choice_token_ids(tokenizer: Any) -> list[int]:
    return [tokenizer.encode(letter, add_special_tokens=False)[-1] for letter in CHOICES]


@torch.inference_mode()
def predict_letters(model: Any, prompts: list[list[int]], choice_ids: list[int], pad_id: int,
                    batch_size: int) -> list[str]:
    """The letter with the largest logit at each prompt's last token (right-padded batches)."""
    device = next(model.parameters()).device
    letters = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start:start + batch_size]
        width = max(len(ids) for ids in batch)
        input_ids = torch.tensor([ids + [pad_id] * (width - len(ids)) for ids in batch], device=device)
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch], device=device)
        logits = model(input_ids=input_ids, attention_mask=mask).logits
        last = torch.tensor([len(ids) - 1 for ids in batch], device=device)
        scores = logits[torch.arange(len(batch), device=device), last][:, choice_ids]
        letters += [CHOICES[i] for i in scores.argmax(dim=-1).tolist()]
    return letters


def evaluate_task(model: Any, tokenizer: Any, template: Any, task: Task, lang: str, n_shot: int,
                  batch_size: int, seed: int) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    """(predictions {subject: {index: letter}}, scores {"subjects", "categories"} in percent)."""
    prompt = EVAL_PROMPTS[lang]
    choice_ids = choice_token_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    results: dict[str, dict[str, str]] = {}
    corrects: dict[str, list[bool]] = {name: [] for name in CATEGORIES}
    subject_scores: dict[str, float] = {}
    for key, subject in task.subjects.items():
        rng = random.Random(f"{seed}-{key}")
        prompts = []
        for question in subject.questions:
            shots = rng.sample(subject.shots, min(n_shot, len(subject.shots)))
            messages = build_messages(prompt, question, shots, subject.name)
            prompt_ids, _ = template.encode_oneturn(tokenizer, messages)
            prompts.append(list(prompt_ids))
        letters = predict_letters(model, prompts, choice_ids, pad_id, batch_size)
        right = [letter == question.answer for letter, question in zip(letters, subject.questions)]
        corrects.setdefault(subject.category, []).extend(right)
        corrects["Average"].extend(right)
        subject_scores[key] = 100 * sum(right) / max(len(right), 1)
        results[key] = {str(i): letter for i, letter in enumerate(letters)}
    categories = {name: 100 * sum(values) / len(values) for name, values in corrects.items() if values}
    return results, {"categories": categories, "subjects": subject_scores}


def score_lines(scores: dict[str, Any]) -> str:
    """LLaMA-Factory's results.log: one "<category>: <accuracy>" line per category with questions."""
    return "\n".join(f"{name:>15}: {value:.2f}" for name, value in scores["categories"].items())


def save_results(save_dir: str, results: dict, scores: dict[str, Any]) -> None:
    os.makedirs(save_dir, exist_ok=False)
    with open(os.path.join(save_dir, "results.json"), "w", encoding="utf-8") as file:
        json.dump(results, file, indent=2)
    with open(os.path.join(save_dir, "results.log"), "w", encoding="utf-8") as file:
        file.write(score_lines(scores))
    with open(os.path.join(save_dir, "scores.json"), "w", encoding="utf-8") as file:
        json.dump(scores, file, indent=2, ensure_ascii=False)


def eval_problems(evaluation: EvalArgs, model: ModelArgs) -> list[str]:
    problems = []
    if not evaluation.task:
        problems.append("task is not set: name the benchmark and split, e.g. task: mmlu_test")
    if not model.model_name_or_path:
        problems.append("model_name_or_path is not set; `tuneforge eval` needs the model to score")
    if evaluation.save_dir and os.path.exists(evaluation.save_dir):
        problems.append(f"save_dir: {evaluation.save_dir!r} already exists; results never overwrite an earlier "
                        "run, choose a new folder")
    if evaluation.batch_size < 1:
        problems.append(f"batch_size: {evaluation.batch_size} must be at least 1")
    if evaluation.n_shot < 0:
        problems.append(f"n_shot: {evaluation.n_shot} must be 0 or more")
    return problems


def check_eval_config(cfg: Config) -> None:
    """One ConfigError with every problem of an evaluation config (the shared checks of `validate_config`
    and the evaluation's own), before any weights load."""
    from ..validate import validate_config

    validate_config(cfg, job_problems=eval_problems(cfg.eval, cfg.model))


def run_eval(cfg: Config, *, model: Any = None, tokenizer: Any = None, template: Any = None) -> dict[str, Any]:
    """Evaluate cfg's model on cfg.eval.task; prints the scores, saves them to save_dir; returns the scores.
    Tests may hand in a loaded model, tokenizer and template (all three)."""
    check_eval_config(cfg)
    evaluation = cfg.eval
    assert evaluation.task is not None  # check_eval_config refused a config without it
    task = load_task(evaluation.task_dir, evaluation.task)  # data problems show before the weights load
    if model is None:
        from ..infer import load_for_inference

        model, tokenizer, template = load_for_inference(cfg)
    results, scores = evaluate_task(model, tokenizer, template, task, evaluation.lang, evaluation.n_shot,
                                    evaluation.batch_size, cfg.train.seed)
    for key, value in scores["subjects"].items():
        logger.info("%s: %.2f", key, value)
    print(score_lines(scores))
    if evaluation.save_dir:
        save_results(evaluation.save_dir, results, scores)
    return scores
