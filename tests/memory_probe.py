"""Run by tests/train/test_memory_estimate.py in a fresh process: train a few steps and report the estimated
and the measured peak memory (peak RSS growth from just before the model loads) as one JSON line.

    python memory_probe.py MODEL_DIR OUTPUT_DIR '{"finetuning_type": "full", ...}'
"""

import gc
import importlib.util
import json
import re
import sys

import torch

torch.set_num_threads(1)

from datasets import Dataset  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from tuneforge.data.collator import SFTCollator  # noqa: E402
from tuneforge.data.pipeline import DatasetModule  # noqa: E402
from tuneforge.model.loader import load_model  # noqa: E402
from tuneforge.testing.tiny_model import tiny_config  # noqa: E402
from tuneforge.train.memory_estimate import estimate_training_memory  # noqa: E402
from tuneforge.train.trainer import build_trainer  # noqa: E402


def rss_kib(field):
    status = open("/proc/self/status").read()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1))


def main():
    model_dir, output_dir, extra = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    cfg = tiny_config(model_name_or_path=model_dir, output_dir=output_dir, do_train=True, dataset="rows",
                      report_to="none", save_strategy="no", logging_steps=1, max_steps=2, seed=0,
                      disable_tqdm=True, **extra)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # Every row exactly cutoff_len tokens long: the case the estimate is made for.
    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(5, len(tokenizer), (8, cfg.data.cutoff_len), generator=generator).tolist()
    data = DatasetModule(train_dataset=Dataset.from_dict(
        {"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows], "labels": rows}))

    # Warm-up: a first load pulls in the modules that load_model imports lazily (peft, modelling code),
    # which would otherwise count as training memory. Then measure from a clean peak mark.
    load_model(cfg, tokenizer)
    # transformers' Trainer imports DeepSpeed when it is installed, and DeepSpeed's autotuner imports MLflow
    # when that is installed (the `loggers` extra): ~40 MB of modules that are not training memory.
    if importlib.util.find_spec("deepspeed") is not None:
        import deepspeed  # noqa: F401
    gc.collect()
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak-RSS mark to the current RSS
    baseline = rss_kib("VmRSS")
    model = load_model(cfg, tokenizer)
    collator = SFTCollator(pad_token_id=tokenizer.pad_token_id or 0,
                           attn_implementation=model.config._attn_implementation)
    trainer = build_trainer(cfg, cfg.training_args, model, tokenizer, collator, data)
    estimate = estimate_training_memory(trainer.model, cfg, trainer.args)
    trainer.train()
    peak = rss_kib("VmHWM")
    print(json.dumps({"measured": (peak - baseline) * 1024, "estimated": estimate.total,
                      "parts": {"weights": estimate.weights, "gradients": estimate.gradients,
                                "optimizer": estimate.optimizer, "activations": estimate.activations}}))


if __name__ == "__main__":
    main()
