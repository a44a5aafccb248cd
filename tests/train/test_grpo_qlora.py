"""Stage grpo with QLoRA on CPU: LoRA trains on bitsandbytes 4-bit (nf4) or HQQ 4-bit weights, and with beta > 0 the
reference is the same quantized model with its adapter switched off (no second copy)."""

import json

import pytest

import tuneforge.train.stages.grpo.recipe as recipe
from tuneforge.config import make_config
from tuneforge.train import run_train

QUANTIZED = {"bnb": "Linear4bit", "hqq": "HQQLinear"}


@pytest.fixture(scope="module")
def prompts_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("grpo_qlora")
    rows = [{"instruction": f"Question {i}: say something.", "output": str(i)} for i in range(4)]
    (path / "prompts.json").write_text(json.dumps(rows))
    (path / "dataset_info.json").write_text(json.dumps({"prompts": {"file_name": "prompts.json"}}))
    return path


@pytest.mark.parametrize("method", ["bnb", "hqq"])
def test_grpo_trains_lora_on_4bit_weights(tiny_llama_dir, prompts_dir, tmp_path, monkeypatch, method):
    pytest.importorskip("bitsandbytes" if method == "bnb" else "hqq")
    models, loads = [], []
    original = recipe.load_model

    def load(cfg, tokenizer, is_trainable=True):
        loads.append(is_trainable)
        models.append(original(cfg, tokenizer, is_trainable))
        return models[-1]

    monkeypatch.setattr(recipe, "load_model", load)
    monkeypatch.setattr("tuneforge.model.loader.load_model", load)
    cfg = make_config(dict(
        model_name_or_path=str(tiny_llama_dir), stage="grpo", do_train=True, finetuning_type="lora",
        quantization_bit=4, quantization_method=method, dataset="prompts", dataset_dir=str(prompts_dir),
        template="default", cutoff_len=64, output_dir=str(tmp_path), per_device_train_batch_size=2,
        num_generations=2, max_completion_length=6, reward_funcs="length", soft_cache_length=3, beta=0.04,
        learning_rate=1e-2, lr_scheduler_type="constant", max_steps=2, logging_steps=1, report_to="none",
        do_sample=True, temperature=1.0, top_p=1.0, top_k=0, seed=1))
    run_train(cfg)
    log = [json.loads(line) for line in open(tmp_path / "trainer_log.jsonl")]
    assert [record["step"] for record in log] == [1, 2]
    assert all(record["loss"] == record["loss"] for record in log)  # not NaN
    assert "kl" in log[0] and log[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # step 1: adapter = base
    assert loads == [True]  # the reference is the quantized policy with its adapter off, not a second load
    kinds = {type(module).__name__ for module in models[0].modules()}
    assert QUANTIZED[method] in kinds, kinds
    assert (tmp_path / "adapter_model.safetensors").is_file()
