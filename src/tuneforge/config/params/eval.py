"""Benchmark evaluation (`tuneforge eval`, multiple-choice tasks such as MMLU).

LLaMA-Factory's evaluation arguments also have `seed` (default 42); here it is the training-arguments
`seed`, which has the same default, so one key serves both.
"""

from ..schema import declare

G = "eval"
declare("task", "str", None, "Benchmark and split to evaluate, `<folder>_<split>` (e.g. mmlu_test, "
        "ceval_validation).", G)
declare("task_dir", "str", "evaluation", "Folder holding the benchmark folders (mapping.json + CSV files in the "
        "public MMLU / CMMLU / C-Eval layout).", G)
declare("batch_size", "int", 4, "Evaluation batch size per device.", G)
declare("lang", "str", "en", "Language of the evaluation prompts.", G, choices=("en", "zh"))
declare("n_shot", "int", 5, "Number of few-shot examples.", G)
declare("save_dir", "str", None, "Folder for the evaluation results (must not exist yet).", G)
# Benchmarks are read from local files (no download), so only the default has a meaning here.
declare("download_mode", "str", "reuse_dataset_if_exists", "Whether evaluation datasets are downloaded "
        "again.", G, choices=("reuse_dataset_if_exists", "reuse_cache_if_exists", "force_redownload"),
        implemented=False)
