"""Preference and KTO data through the same pipeline as SFT: LLaMA-Factory's dpo / kto / reward example
YAMLs unchanged on their sharegpt demo data, and alpaca-format preference and KTO files, on a tiny model."""

import json

import pytest
from shared_paths import LF_DEMO_DATA as LF_DATA
from shared_paths import LF_EXAMPLES

from tuneforge.config import load_config, make_config
from tuneforge.model.value_head import VALUE_HEAD_FILE
from tuneforge.testing.tiny_model import TINY_QA
from tuneforge.train import run_train


def _records(output_dir):
    return [json.loads(line) for line in open(output_dir / "trainer_log.jsonl")]


@pytest.mark.skipif(not LF_EXAMPLES.is_dir() or not LF_DATA.is_dir(), reason="LLaMA-Factory examples not present")
@pytest.mark.parametrize("example, logged, curve", [
    ("qwen3_lora_dpo.yaml", "rewards/accuracies", "training_rewards_accuracies.png"),
    ("qwen3_lora_kto.yaml", "rewards/chosen", "training_rewards_chosen.png"),
    ("qwen3_lora_reward.yaml", "rewards/chosen", "training_loss.png"),
])
def test_llamafactory_preference_examples_run_unchanged(tiny_qwen2_dir, tmp_path, example, logged, curve):
    overrides = [f"model_name_or_path={tiny_qwen2_dir}", f"dataset_dir={LF_DATA}", f"output_dir={tmp_path}",
                 "max_samples=8", "cutoff_len=64", "max_steps=2", "logging_steps=1", "bf16=false",
                 "preprocessing_num_workers=1", "dataloader_num_workers=0"]
    cfg = load_config(str(LF_EXAMPLES / "train_lora" / example), overrides)
    run_train(cfg)
    records = _records(tmp_path)
    assert len(records) == 2 and logged in records[0], records[0]
    assert (tmp_path / "adapter_model.safetensors").is_file()
    assert (tmp_path / VALUE_HEAD_FILE).is_file() == (cfg.method.stage == "rm")
    assert (tmp_path / curve).is_file()  # the examples set plot_loss: true


@pytest.fixture(scope="module")
def alpaca_dir(tmp_path_factory):
    """Alpaca-format preference rows (instruction/input/chosen/rejected) and KTO rows (output + kto_tag)."""
    path = tmp_path_factory.mktemp("alpaca_pref")
    pairs = [{"instruction": q, "input": "", "chosen": a, "rejected": TINY_QA[(i + 3) % len(TINY_QA)][1]}
             for i, (q, a) in enumerate(TINY_QA)]
    kto = [{"instruction": p["instruction"], "output": p["chosen"], "kto_tag": True} for p in pairs]
    kto += [{"instruction": p["instruction"], "output": p["rejected"], "kto_tag": False} for p in pairs]
    (path / "pairs.json").write_text(json.dumps(pairs))
    (path / "kto.json").write_text(json.dumps(kto))
    (path / "dataset_info.json").write_text(json.dumps({
        "alpaca_pairs": {"file_name": "pairs.json", "ranking": True,
                         "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen",
                                     "rejected": "rejected"}},
        "alpaca_kto": {"file_name": "kto.json",
                       "columns": {"prompt": "instruction", "response": "output", "kto_tag": "kto_tag"}},
    }))
    return path


@pytest.mark.parametrize("stage, method, dataset", [("rm", "freeze", "alpaca_pairs"), ("kto", "full", "alpaca_kto"),
                                                    ("dpo", "lora", "alpaca_pairs")])
def test_alpaca_preference_and_kto_data_train(tiny_qwen2_dir, alpaca_dir, tmp_path, stage, method, dataset):
    cfg = make_config(dict(
        model_name_or_path=str(tiny_qwen2_dir), stage=stage, do_train=True, finetuning_type=method, dataset=dataset,
        dataset_dir=str(alpaca_dir), template="qwen", cutoff_len=64, output_dir=str(tmp_path),
        per_device_train_batch_size=8, learning_rate=5e-3, max_steps=4, logging_steps=2, report_to="none",
        overwrite_cache=True, freeze_trainable_layers=1, disable_gradient_checkpointing=True))
    metrics = run_train(cfg)
    records = _records(tmp_path)
    assert records[-1]["loss"] < records[0]["loss"], records
    assert metrics["train_loss"] > 0


@pytest.mark.parametrize("values, problem", [
    ({"stage": "sft", "pref_beta": 0.2}, "pref_beta only applies to stage dpo or kto (stage is 'sft'); remove it."),
    ({"stage": "kto", "pref_loss": "ipo"}, "pref_loss only applies to stage dpo (stage is 'kto'); remove it."),
    ({"stage": "dpo", "kto_chosen_weight": 2.0},
     "kto_chosen_weight only applies to stage kto (stage is 'dpo'); remove it."),
    ({"stage": "dpo", "pref_loss": "orpo", "ref_model": "m"}, "pref_loss 'orpo' uses no reference model; remove "
                                                              "ref_model."),
    ({"stage": "dpo", "pref_loss": "simpo", "pref_bco_weight": 0.5}, "pref_bco_weight needs a reference model, "
     "which pref_loss 'simpo' does not use; remove pref_bco_weight or choose sigmoid, hinge, ipo or kto_pair."),
    ({"stage": "dpo", "simpo_gamma": 1.0}, "simpo_gamma only applies to pref_loss simpo (it is 'sigmoid'); remove it."),
    ({"stage": "kto", "ref_model_quantization_bit": 4}, "ref_model_quantization_bit: with LoRA and no ref_model the "
     "reference is the policy with its adapter disabled, so there is no separate model to quantize; set ref_model "
     "or remove ref_model_quantization_bit."),
    ({"stage": "dpo", "ref_model_adapters": "a"}, "ref_model_adapters needs ref_model (the model those adapters "
                                                  "belong to)."),
])
def test_preference_keys_the_stage_would_ignore_are_refused(values, problem):
    from tuneforge.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        make_config({"do_train": True, "dataset": "d", **values})
    assert problem in info.value.problems


def test_preference_keys_of_the_stage_are_accepted():
    make_config({"do_train": True, "dataset": "d", "stage": "kto", "pref_beta": 0.2, "kto_chosen_weight": 2.0})
    make_config({"do_train": True, "dataset": "d", "stage": "dpo", "pref_loss": "simpo", "simpo_gamma": 1.0})
