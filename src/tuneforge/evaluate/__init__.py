"""Benchmark evaluation: `tuneforge eval` on multiple-choice tasks in MMLU / CMMLU / C-Eval layout.

    run_eval(cfg) -> {"categories": {...}, "subjects": {...}}      (benchmark.py; files read by tasks.py)

Prediction with BLEU/ROUGE (`do_predict`) runs inside the sft recipe: see train/predict.py.
"""

from .benchmark import run_eval

__all__ = ["run_eval"]
