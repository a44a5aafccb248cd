"""Prediction (do_predict + predict_with_generate): BLEU/ROUGE as LLaMA-Factory scores them, on hand-checked
strings, and a real prediction run through the sft recipe: batched (left-padded) answers equal one-at-a-time
answers, generated_predictions.jsonl holds prompt/predict/label, and the reported metrics are its scores."""

import json

import pytest
import torch

from tuneforge.errors import ConfigError
from tuneforge.train import run_train
from tuneforge.train.evaluation.text_metrics import example_scores, similarity_scores

ROWS = [("What is tuneforge?", "A tool that fine-tunes language models."), ("Say hello.", "Hello there!"),
        ("Name the capital of France, please, in one word.", "Paris."), ("Give a colour.", "Blue."),
        ("Count to three and then stop counting.", "1 2 3")]


# ---- metrics on known strings -------------------------------------------------------------------------

def test_identical_texts_score_100():
    assert example_scores("same text", "same text") == {"rouge-1": 100.0, "rouge-2": 100.0, "rouge-l": 100.0,
                                                       "bleu-4": 100.0}


def test_english_prefix_scores_by_hand():
    # jieba words: the/cat/sat vs the/cat/sat/down. ROUGE-1: P=3/3, R=3/4 -> F=6/7; ROUGE-2: P=2/2, R=2/3 -> 0.8;
    # ROUGE-L: LCS 3 -> 6/7. BLEU on characters: every n-gram of the 11-char hypothesis is in the 16-char
    # reference, so BLEU = brevity penalty = exp(1 - 16/11).
    assert example_scores("the cat sat", "the cat sat down") == {
        "rouge-1": 85.7143, "rouge-2": 80.0, "rouge-l": 85.7143, "bleu-4": 63.4736}


def test_chinese_is_segmented_with_jieba():
    # 我/爱/北京 vs 我/爱/北京/天安门 (jieba words, not characters): same ROUGE as above; BLEU: exp(1 - 7/4).
    assert example_scores("我爱北京", "我爱北京天安门") == {
        "rouge-1": 85.7143, "rouge-2": 80.0, "rouge-l": 85.7143, "bleu-4": 47.2367}


def test_smoothing_method3_for_missing_4grams():
    # Characters a,b,c,e vs a,b,c,d: p1=3/4, p2=2/3, p3=1/2, no 4-gram match -> method3 gives 1/(2*1).
    # (0.75 * 2/3 * 0.5 * 0.5) ** 0.25 = 0.125 ** 0.25. One jieba word each, different -> ROUGE 0.
    assert example_scores("abce", "abcd") == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0, "bleu-4": 59.4604}


def test_empty_prediction_scores_zero_and_mean_over_examples():
    assert example_scores("", "abc") == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0, "bleu-4": 0.0}
    mean = similarity_scores(["same text", ""], ["same text", "abc"])
    assert mean == {"rouge-1": 50.0, "rouge-2": 50.0, "rouge-l": 50.0, "bleu-4": 50.0}


# ---- a prediction run ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_llama_dir):
    """{"model": the shared tiny llama, "data": a dataset dir with the ROWS as dataset "qa"}."""
    torch.set_num_threads(1)
    data = tmp_path_factory.mktemp("predict_data")
    (data / "dataset_info.json").write_text(json.dumps({"qa": {"file_name": "qa.json"}}))
    (data / "qa.json").write_text(json.dumps([{"instruction": q, "input": "", "output": a} for q, a in ROWS]))
    return {"model": tiny_llama_dir, "data": data}


def _predict(setup, output_dir, **values):
    settings = dict(model_name_or_path=str(setup["model"]), stage="sft", do_predict=True,
                    predict_with_generate=True, finetuning_type="lora", eval_dataset="qa",
                    dataset_dir=str(setup["data"]), template="qwen", cutoff_len=128, output_dir=str(output_dir),
                    do_sample=False, max_new_tokens=6, report_to="none", overwrite_cache=True)
    return run_train({**settings, **values})


def _lines(output_dir):
    return [json.loads(line) for line in (output_dir / "generated_predictions.jsonl").read_text().splitlines()]


def test_batched_prediction_writes_predictions_and_their_scores(setup, tmp_path):
    metrics = _predict(setup, tmp_path / "batched", per_device_eval_batch_size=4)
    # do_eval with predict_with_generate scores the same generations under eval_* (no predictions file).
    one_by_one = _predict(setup, tmp_path / "single", per_device_eval_batch_size=1, do_eval=True)

    lines = _lines(tmp_path / "batched")
    # Dataset order kept; as in LLaMA-Factory the label is the template's answer slot ("\n" after <|im_end|>).
    assert [line["label"] for line in lines] == [answer + "\n" for _, answer in ROWS]
    for line, (question, _) in zip(lines, ROWS):
        assert "<|im_start|>user\n" + question + "<|im_end|>" in line["prompt"]
        assert line["prompt"].endswith("<|im_start|>assistant\n")
    # Left padding must not change an answer: batch 4 (mixed lengths) gives exactly the batch-1 answers.
    assert [line["predict"] for line in lines] == [line["predict"] for line in _lines(tmp_path / "single")]
    assert any(line["predict"] for line in lines)

    expected = similarity_scores([line["predict"] for line in lines], [line["label"] for line in lines])
    for key, value in expected.items():
        assert metrics[f"predict_{key}"] == pytest.approx(value)
        assert one_by_one[f"predict_{key}"] == pytest.approx(value)
        assert one_by_one[f"eval_{key}"] == pytest.approx(value)
    saved = json.loads((tmp_path / "batched" / "predict_results.json").read_text())
    assert saved["predict_bleu-4"] == pytest.approx(expected["bleu-4"])


def test_do_predict_is_refused_outside_sft(setup, tmp_path):
    with pytest.raises(ConfigError, match="stage sft"):
        _predict(setup, tmp_path, stage="pt", predict_with_generate=False)


def test_generation_during_training_is_refused_up_front(setup, tmp_path):
    with pytest.raises(ConfigError, match="set eval_strategy: no"):
        _predict(setup, tmp_path, do_train=True, dataset="qa", eval_strategy="steps", eval_steps=1)
