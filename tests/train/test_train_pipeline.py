"""End to end through the real data pipeline: tuneforge's bundled demo data and LLaMA-Factory's example YAMLs
on a local tiny model (the LF files are used only where ../shared is present)."""

import json
import os
from pathlib import Path

import pytest
from shared_paths import LF_DEMO_DATA as LF_DATA
from shared_paths import LF_EXAMPLES

from tuneforge.config import load_config, make_config
from tuneforge.train import run_train

DEMO_DATA = Path(__file__).resolve().parents[2] / "src" / "tuneforge" / "demo" / "data"


def _losses(output_dir):
    return [json.loads(line)["loss"] for line in open(os.path.join(output_dir, "trainer_log.jsonl"))]


@pytest.mark.parametrize("stage, method", [("sft", "lora"), ("pt", "full")])
def test_bundled_demo_data_trains(tiny_qwen2_dir, tmp_path, stage, method):
    cfg = make_config(dict(
        model_name_or_path=str(tiny_qwen2_dir), stage=stage, do_train=True, finetuning_type=method,
        dataset="demo_alpaca", dataset_dir=str(DEMO_DATA), template="qwen", cutoff_len=128,
        output_dir=str(tmp_path), per_device_train_batch_size=4, learning_rate=1e-2 if method == "lora" else 5e-3,
        max_steps=20, logging_steps=5, save_steps=10, report_to="none", overwrite_cache=True))
    metrics = run_train(cfg)
    losses = _losses(tmp_path)
    assert losses[-1] < 0.7 * losses[0], losses
    assert metrics["train_loss"] > 0
    tokenizer_config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in tokenizer_config.get("chat_template", ""), "the template's chat format is saved"


@pytest.mark.skipif(not LF_EXAMPLES.is_dir() or not LF_DATA.is_dir(), reason="LLaMA-Factory examples not present")
@pytest.mark.parametrize("example", ["train_lora/qwen3_lora_sft.yaml", "train_lora/qwen3_lora_pretrain.yaml",
                                     "train_full/qwen3_full_sft.yaml"])
def test_llamafactory_example_runs_unchanged_on_a_tiny_model(tiny_qwen2_dir, tmp_path, example):
    overrides = [f"model_name_or_path={tiny_qwen2_dir}", f"dataset_dir={LF_DATA}", f"output_dir={tmp_path}",
                 "max_samples=16", "cutoff_len=64", "max_steps=3", "logging_steps=1",
                 "preprocessing_num_workers=1", "dataloader_num_workers=0", "deepspeed=null"]
    cfg = load_config(str(LF_EXAMPLES / example), overrides)
    run_train(cfg)
    assert len(_losses(tmp_path)) == 3
    assert (tmp_path / "training_loss.png").is_file()  # the examples set plot_loss: true
