"""BLEU-4 and ROUGE-1/2/L of generated answers against references, scored as LLaMA-Factory 0.9.5 scores them.

LLaMA-Factory's rules (train/sft/metric.py there), which users compare numbers against:
  - ROUGE: both texts are segmented with jieba (so Chinese gets word boundaries), the pieces joined by
    spaces and scored with `rouge_chinese.Rouge`; the F-measure is reported. A text with no word at all
    scores 0 on every ROUGE.
  - BLEU-4: nltk `sentence_bleu` over *characters* (the reference and the hypothesis as character lists),
    with smoothing method 3 (NIST geometric sequence smoothing).
  - each score is ×100, rounded to 4 decimals per example, then averaged over the examples.

    similarity_scores(["the cat sat"], ["the cat sat down"])
        -> {"rouge-1": 85.7143, "rouge-2": ..., "rouge-l": ..., "bleu-4": ...}
"""

from __future__ import annotations

import logging

from ...errors import UserError

METRIC_KEYS = ("rouge-1", "rouge-2", "rouge-l", "bleu-4")
PACKAGES = "jieba, nltk and rouge-chinese"


def _libraries():
    """(jieba, sentence_bleu, SmoothingFunction, Rouge), or a UserError saying what to install."""
    try:
        import jieba
        from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
        from rouge_chinese import Rouge
    except ImportError as error:
        raise UserError(f"predict_with_generate scores answers with {PACKAGES}, and {error.name} is not "
                        "installed; run `pip install 'tuneforge[metrics]'`") from None
    jieba.setLogLevel(logging.WARNING)  # its dictionary-loading chatter is not ours to print
    return jieba, sentence_bleu, SmoothingFunction, Rouge


def check_metric_libraries() -> None:
    """Fail before any weights load when the scoring libraries are missing."""
    _libraries()


def example_scores(prediction: str, reference: str) -> dict[str, float]:
    """The four scores (×100, rounded to 4 decimals) of one generated answer."""
    jieba, sentence_bleu, SmoothingFunction, Rouge = _libraries()
    hypothesis = " ".join(jieba.cut(prediction))
    target = " ".join(jieba.cut(reference))
    scores: dict[str, float] = {}
    if not hypothesis.split() or not target.split():
        scores.update({"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0})
    else:
        result = Rouge().get_scores(hypothesis, target)[0]
        for key in ("rouge-1", "rouge-2", "rouge-l"):
            scores[key] = round(result[key]["f"] * 100, 4)
    bleu = sentence_bleu([list(reference)], list(prediction), smoothing_function=SmoothingFunction().method3)
    scores["bleu-4"] = round(bleu * 100, 4)
    return scores


def similarity_scores(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean of each score over the examples (keys: rouge-1, rouge-2, rouge-l, bleu-4)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    totals = dict.fromkeys(METRIC_KEYS, 0.0)
    for prediction, reference in zip(predictions, references):
        for key, value in example_scores(prediction, reference).items():
            totals[key] += value
    count = max(len(predictions), 1)
    return {key: totals[key] / count for key in METRIC_KEYS}
