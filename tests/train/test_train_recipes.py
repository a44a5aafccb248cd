"""pt and sft recipes with full / freeze / lora on a tiny overfit set: the loss falls, exactly the intended
parameters change, the run directory is complete, and what is saved reloads with plain transformers/peft."""

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

import tuneforge.train.stages.pt as pt_recipe
import tuneforge.train.stages.sft as sft_recipe
from tuneforge.data.tokenizer import load_tokenizer
from tuneforge.testing.tiny_model import tiny_config, tiny_dataset

# method -> (extra config, learning rate). Freeze trains one layer: the last for sft, the first for pt.
METHODS = {
    "full": ({}, 5e-3),
    "freeze": ({"freeze_trainable_layers": 1}, 1e-2),
    "lora": ({}, 1e-2),
}
STEPS = 30
# The bundled demo data: a dataset that exists, for the tests that must pass the data checks of run_train.
DEMO_DATA = Path(__file__).resolve().parents[2] / "src" / "tuneforge" / "demo" / "data"


def _toy_tokenizer_and_template(cfg):
    tokenizer = load_tokenizer(cfg)
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, None


def _toy_data(tokenizer, stage, with_eval):
    data = tiny_dataset(tokenizer, stage)
    if with_eval:
        data.eval_dataset = data.train_dataset.select(range(2))
    return data


def run_recipe(stage, model_dir, output_dir, with_eval=False, **values):
    """Run the real recipe on the toy rows (the first two again as eval rows when with_eval);
    return (metrics, trained trainer)."""
    recipe = pt_recipe if stage == "pt" else sft_recipe
    run = recipe.run_pt if stage == "pt" else recipe.run_sft
    captured = {}
    original_build = recipe.build_trainer

    def spy_build(*args, **kwargs):
        captured["trainer"] = original_build(*args, **kwargs)
        return captured["trainer"]

    settings = dict(model_name_or_path=str(model_dir), output_dir=str(output_dir), stage=stage, do_train=True,
                    dataset="toy_rows",  # replaced by tiny_dataset below
                    per_device_train_batch_size=8, max_steps=STEPS, logging_steps=5, save_steps=15,
                    report_to="none", seed=42)
    settings.update(values)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recipe, "load_tokenizer_and_template", _toy_tokenizer_and_template)
        patch.setattr(recipe, "get_dataset",
                      lambda cfg, tokenizer, template, stage: _toy_data(tokenizer, stage, with_eval))
        patch.setattr(recipe, "build_trainer", spy_build)
        metrics = run(tiny_config(**settings))
    return metrics, captured["trainer"]


@pytest.fixture(scope="module")
def runs(tiny_llama_dir, tmp_path_factory):
    """One run per (stage, method), made on first use and shared by the tests below."""
    cache = {}

    def get(stage, method):
        if (stage, method) not in cache:
            extra, lr = METHODS[method]
            if method == "freeze" and stage == "pt":
                extra = {"freeze_trainable_layers": -1}
            output_dir = tmp_path_factory.mktemp(f"{stage}_{method}")
            metrics, trainer = run_recipe(stage, tiny_llama_dir, output_dir, finetuning_type=method, learning_rate=lr,
                                          plot_loss=(stage, method) == ("sft", "lora"), **extra)
            cache[stage, method] = (output_dir, metrics, trainer)
        return cache[stage, method]

    return get


def _losses(output_dir):
    return [json.loads(line)["loss"] for line in open(os.path.join(output_dir, "trainer_log.jsonl"))]


@pytest.mark.parametrize("stage", ["pt", "sft"])
@pytest.mark.parametrize("method", ["full", "freeze", "lora"])
def test_loss_falls(runs, stage, method):
    output_dir, metrics, _ = runs(stage, method)
    losses = _losses(output_dir)
    assert len(losses) == STEPS // 5
    assert losses[-1] < 0.5 * losses[0], losses
    assert metrics["train_loss"] > 0


def _changed_tensors(model_dir, output_dir):
    before = load_file(os.path.join(model_dir, "model.safetensors"))
    after = load_file(os.path.join(output_dir, "model.safetensors"))
    assert before.keys() == after.keys()
    return {name for name in before if not torch.equal(before[name], after[name])}, set(before)


def test_full_changes_every_parameter(runs, tiny_llama_dir):
    output_dir, _, _ = runs("sft", "full")
    changed, names = _changed_tensors(tiny_llama_dir, output_dir)
    assert changed == names


@pytest.mark.parametrize("stage, trained_layer", [("sft", 1), ("pt", 0)])
def test_freeze_changes_only_the_chosen_layer(runs, tiny_llama_dir, stage, trained_layer):
    output_dir, _, _ = runs(stage, "freeze")
    changed, names = _changed_tensors(tiny_llama_dir, output_dir)
    assert changed == {name for name in names if name.startswith(f"model.layers.{trained_layer}.")}


def test_lora_trains_and_saves_only_adapter_weights(runs):
    output_dir, _, _ = runs("sft", "lora")
    assert not os.path.exists(os.path.join(output_dir, "model.safetensors"))
    weights = load_file(os.path.join(output_dir, "adapter_model.safetensors"))
    modules = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
               "mlp.up_proj", "mlp.down_proj"]
    expected = {f"base_model.model.model.layers.{layer}.{module}.lora_{part}.weight"
                for layer in (0, 1) for module in modules for part in "AB"}
    assert set(weights) == expected
    assert all(weights[name].abs().sum() > 0 for name in weights if "lora_B" in name)  # B starts at zero


def _logits(model, tokenizer):
    ids = torch.tensor([tokenizer("User: Say hello.\nAssistant: ")["input_ids"]])
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_saved_adapter_loads_with_plain_peft_and_gives_the_same_logits(runs, tiny_llama_dir):
    from peft import PeftModel

    output_dir, _, trainer = runs("sft", "lora")
    tokenizer = AutoTokenizer.from_pretrained(str(output_dir))
    base = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    base_logits = _logits(base, tokenizer)
    reloaded = PeftModel.from_pretrained(base, str(output_dir))
    expected = _logits(trainer.model, tokenizer)
    assert torch.allclose(_logits(reloaded, tokenizer), expected, atol=1e-5)
    assert not torch.allclose(base_logits, expected, atol=1e-3)


def test_saved_full_model_loads_with_plain_transformers(runs):
    output_dir, _, trainer = runs("sft", "full")
    tokenizer = AutoTokenizer.from_pretrained(str(output_dir))
    reloaded = AutoModelForCausalLM.from_pretrained(str(output_dir))
    assert reloaded.config.use_cache is True  # training turned it off for checkpointing
    assert torch.allclose(_logits(reloaded, tokenizer), _logits(trainer.model, tokenizer), atol=1e-5)


def test_run_directory(runs):
    output_dir, _, _ = runs("sft", "lora")
    names = set(os.listdir(output_dir))
    assert {"run.yaml", "trainer_log.jsonl", "running_log.txt", "all_results.json", "training_loss.png",
            "adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "checkpoint-15", "checkpoint-30"} <= names
    assert ".staging" not in names

    run = yaml.safe_load(open(os.path.join(output_dir, "run.yaml")))
    assert (run["stage"], run["finetuning_type"], run["learning_rate"]) == ("sft", "lora", 1e-2)

    records = [json.loads(line) for line in open(os.path.join(output_dir, "trainer_log.jsonl"))]
    assert [record["step"] for record in records] == [5, 10, 15, 20, 25, 30]
    assert {"step", "total", "loss", "lr", "epoch", "elapsed", "remaining"} <= set(records[0])
    assert records[-1]["total"] == 30 and records[-1]["remaining"] == 0
    assert records[0]["elapsed"] <= records[-1]["elapsed"]

    log_text = open(os.path.join(output_dir, "running_log.txt")).read()
    assert "trainable params: 16,384" in log_text
    assert "step 30/30 | loss " in log_text

    results = json.load(open(os.path.join(output_dir, "all_results.json")))
    assert results["train_loss"] > 0 and results["epoch"] > 0
    assert open(os.path.join(output_dir, "training_loss.png"), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    for checkpoint in ("checkpoint-15", "checkpoint-30"):
        assert os.path.isfile(os.path.join(output_dir, checkpoint, "trainer_state.json"))
        assert os.path.isfile(os.path.join(output_dir, checkpoint, "adapter_model.safetensors"))


def test_lora_model_reproduces_training_answers_greedily(runs, tiny_llama_dir):
    from peft import PeftModel

    output_dir, _, _ = runs("sft", "lora")
    tokenizer = AutoTokenizer.from_pretrained(str(output_dir))
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)), str(output_dir))
    model.eval()
    for question, answer in [("Say hello.", "Hello there!"), ("What is 2 + 2?", "2 + 2 = 4."),
                             ("Name the capital of France.", "Paris.")]:
        ids = torch.tensor([tokenizer(f"User: {question}\nAssistant: ")["input_ids"]])
        output = model.generate(input_ids=ids, max_new_tokens=12, do_sample=False,
                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
        assert tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True) == answer


def test_oft_is_no_longer_refused_and_reaches_the_model_checks(tmp_path):
    """OFT is built (tests/model/test_oft.py); a missing model is the first problem such a run meets."""
    from tuneforge.errors import ConfigError
    from tuneforge.train import run_train

    with pytest.raises(ConfigError, match=r"^model_name_or_path: directory .*absent' does not exist"):
        run_train({"model_name_or_path": str(tmp_path / "absent"), "finetuning_type": "oft", "stage": "sft",
                   "dataset": "demo_alpaca", "dataset_dir": str(DEMO_DATA), "output_dir": str(tmp_path / "out"),
                   "do_train": True})
