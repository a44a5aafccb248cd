"""Preprocess-only runs (a tokenized_path that does not exist yet) validate without building the transformers
training arguments: no torch/peft import. The arguments are built, with the same errors, on first access."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tuneforge.config import make_config
from tuneforge.config.hf_args import describe_live, hf_params
from tuneforge.errors import ConfigError

STRATEGY_MISMATCH = {"load_best_model_at_end": True, "eval_strategy": "steps", "save_strategy": "epoch",
                     "dataset": "a", "val_size": 0.1}


def test_the_snapshot_matches_the_installed_transformers():
    # If this fails after a transformers upgrade, run `python -m tuneforge.config.hf_args`.
    assert hf_params() == describe_live()


def test_preprocess_only_run_defers_transformers_checks_to_first_access(tmp_path):
    cfg = make_config({**STRATEGY_MISMATCH, "tokenized_path": str(tmp_path / "tokenized")})
    with pytest.raises(ConfigError) as error:
        cfg.training_args
    assert "load_best_model_at_end, save_strategy: --load_best_model_at_end requires the save and eval " \
           "strategy to match" in str(error.value)


def test_training_run_still_reports_transformers_checks_up_front(tmp_path):
    existing = tmp_path / "tokenized"
    existing.mkdir()  # present (even empty): the run trains, so every check runs in make_config
    for values in (STRATEGY_MISMATCH, {**STRATEGY_MISMATCH, "tokenized_path": str(existing)}):
        with pytest.raises(ConfigError, match="raised by transformers.Seq2SeqTrainingArguments"):
            make_config(values)


def test_type_errors_of_training_keys_are_reported_up_front_even_when_deferred(tmp_path):
    with pytest.raises(ConfigError, match="learning_rate"):
        make_config({"learning_rate": "fast", "tokenized_path": str(tmp_path / "tokenized")})


def test_lazy_training_args_are_built_once_and_survive_replace(tmp_path):
    cfg = make_config({"learning_rate": 1e-4, "tokenized_path": str(tmp_path / "tokenized")})
    copy = cfg.replace(cutoff_len=64)
    assert cfg.training_args is cfg.training_args
    assert cfg.training_args.learning_rate == copy.training_args.learning_rate == 1e-4


def test_preprocess_only_config_imports_neither_torch_nor_transformers(tmp_path):
    code = ("import sys; from tuneforge.config import make_config; "
            f"make_config({{'stage': 'sft', 'do_train': True, 'tokenized_path': {str(tmp_path / 't')!r}}}); "
            "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    src = str(Path(__file__).resolve().parents[2] / "src")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": src, "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]"
