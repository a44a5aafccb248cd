"""Benchmark evaluation (`tuneforge eval`, multiple-choice tasks such as MMLU).

LLaMA-Factory's evaluation arguments also have `seed` (default 42); here it is the training-arguments
`seed`, which has the same default, so one key serves both.
"""

from ..schema import declare

G = "eval"
LATER = {"implemented": False}

declare("task", "str", None, "Evaluation task name (e.g. mmlu_test).", G, **LATER)
declare("task_dir", "str", "evaluation", "Folder holding the evaluation datasets.", G, **LATER)
declare("batch_size", "int", 4, "Evaluation batch size per device.", G, **LATER)
declare("lang", "str", "en", "Language of the evaluation prompts.", G, choices=("en", "zh"), **LATER)
declare("n_shot", "int", 5, "Number of few-shot examples.", G, **LATER)
declare("save_dir", "str", None, "Folder for the evaluation results (must not exist yet).", G, **LATER)
declare("download_mode", "str", "reuse_dataset_if_exists", "Whether evaluation datasets are downloaded "
        "again.", G, choices=("reuse_dataset_if_exists", "reuse_cache_if_exists", "force_redownload"), **LATER)
