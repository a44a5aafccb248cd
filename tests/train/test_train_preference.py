"""rm / dpo / kto recipes on a tiny overfit set (toy rows, no data pipeline): DPO's reward accuracy reaches
1.0, the reward model ranks every pair, KTO separates desirable from undesirable answers; the LoRA
reference is the adapter-off policy; what is saved loads back."""

import json
import os

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file

import tuneforge.train.stages.dpo as dpo_recipe
import tuneforge.train.stages.kto as kto_recipe
import tuneforge.train.stages.rm as rm_recipe
from tuneforge.data.pipeline import DatasetModule
from tuneforge.data.tokenizer import load_tokenizer
from tuneforge.model.value_head import VALUE_HEAD_FILE, load_value_head_model
from tuneforge.testing.tiny_model import TINY_QA, tiny_config

RECIPES = {"dpo": dpo_recipe, "kto": kto_recipe, "rm": rm_recipe}
# Each prompt's chosen answer is its own; the rejected one is another prompt's answer.
PAIRS = [(q, a, TINY_QA[(i + 3) % len(TINY_QA)][1]) for i, (q, a) in enumerate(TINY_QA)]


def _encode(tokenizer, question, answer):
    prompt = tokenizer(f"User: {question}\nAssistant: ")["input_ids"]
    response = tokenizer(answer)["input_ids"] + [tokenizer.eos_token_id]
    return prompt + response, [-100] * len(prompt) + response


def pairwise_rows(tokenizer):
    rows = {f"{side}_{name}": [] for side in ("chosen", "rejected") for name in ("input_ids", "attention_mask",
                                                                               "labels")}
    for question, chosen, rejected in PAIRS:
        for side, answer in (("chosen", chosen), ("rejected", rejected)):
            ids, labels = _encode(tokenizer, question, answer)
            rows[f"{side}_input_ids"].append(ids)
            rows[f"{side}_attention_mask"].append([1] * len(ids))
            rows[f"{side}_labels"].append(labels)
    return Dataset.from_dict(rows)


def kto_rows(tokenizer):
    """Every prompt twice: with its own answer (desirable) and another's (undesirable); KL rows rotate."""
    examples = [(q, c, True) for q, c, _ in PAIRS] + [(q, r, False) for q, _, r in PAIRS]
    rows = {name: [] for name in ("input_ids", "attention_mask", "labels", "kl_input_ids", "kl_attention_mask",
                                  "kl_labels", "kto_tags")}
    for i, (question, answer, tag) in enumerate(examples):
        ids, labels = _encode(tokenizer, question, answer)
        kl_ids, kl_labels = _encode(tokenizer, question, examples[i - 1][1])
        rows["input_ids"].append(ids)
        rows["attention_mask"].append([1] * len(ids))
        rows["labels"].append(labels)
        rows["kl_input_ids"].append(kl_ids)
        rows["kl_attention_mask"].append([1] * len(kl_ids))
        rows["kl_labels"].append(kl_labels)
        rows["kto_tags"].append(tag)
    return Dataset.from_dict(rows)


def run_stage(stage, model_dir, output_dir, with_eval=False, **values):
    """Run the real recipe on the toy rows; return (metrics, trainer)."""
    recipe = RECIPES[stage]
    captured = {}
    original_build = recipe.build_trainer

    def spy_build(*args, **kwargs):
        captured["trainer"] = original_build(*args, **kwargs)
        return captured["trainer"]

    def toy_data(cfg, tokenizer, template, stage):
        rows = kto_rows(tokenizer) if stage == "kto" else pairwise_rows(tokenizer)
        return DatasetModule(rows, rows if with_eval else None)

    def toy_tokenizer(cfg):
        tokenizer = load_tokenizer(cfg)
        tokenizer.pad_token = tokenizer.eos_token
        return tokenizer, None

    settings = dict(model_name_or_path=str(model_dir), output_dir=str(output_dir), stage=stage, do_train=True,
                    dataset="toy_rows", per_device_train_batch_size=8, max_steps=20, logging_steps=5,
                    save_steps=100, report_to="none", seed=42, learning_rate=1e-2,
                    disable_gradient_checkpointing=True)
    if stage != "rm":
        settings["pref_beta"] = 0.5
    settings.update(values)
    if with_eval:
        settings.update(do_eval=True, eval_dataset="toy_rows", per_device_eval_batch_size=8)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recipe, "load_tokenizer_and_template", toy_tokenizer)
        patch.setattr(recipe, "get_dataset", toy_data)
        patch.setattr(recipe, "build_trainer", spy_build)
        metrics = getattr(recipe, f"run_{stage}")(tiny_config(**settings))
    return metrics, captured["trainer"]


def _log(output_dir):
    return [json.loads(line) for line in open(os.path.join(output_dir, "trainer_log.jsonl"))]


@pytest.fixture(scope="module")
def dpo_lora(tiny_llama_dir, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("dpo_lora")
    metrics, trainer = run_stage("dpo", tiny_llama_dir, output_dir, finetuning_type="lora", with_eval=True)
    return output_dir, metrics, trainer


def test_dpo_lora_reaches_full_reward_accuracy_and_logs_every_metric(dpo_lora):
    output_dir, metrics, _ = dpo_lora
    log = _log(output_dir)
    train_records = [record for record in log if "loss" in record]
    for key in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
                "logps/rejected"):
        assert key in train_records[0], key
    assert train_records[-1]["rewards/accuracies"] == 1.0
    assert train_records[-1]["rewards/margins"] > train_records[0]["rewards/margins"]
    assert train_records[-1]["loss"] < train_records[0]["loss"]
    assert metrics["eval_rewards/accuracies"] == 1.0
    assert metrics["eval_rewards/margins"] == pytest.approx(
        metrics["eval_rewards/chosen"] - metrics["eval_rewards/rejected"], abs=1e-5)
    assert os.path.isfile(os.path.join(output_dir, "adapter_model.safetensors"))


def test_lora_reference_is_the_adapter_off_policy_without_extra_parameters(dpo_lora, tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    _, _, trainer = dpo_lora
    assert trainer.ref_model is None
    policy = trainer.accelerator.unwrap_model(trainer.model)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    lora = sum(p.numel() for name, p in policy.named_parameters() if "lora_" in name)
    assert sum(p.numel() for p in policy.parameters()) == sum(p.numel() for p in base.parameters()) + lora
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    policy.eval()
    with torch.no_grad():
        trained = policy(input_ids=ids).logits
        with policy.disable_adapter():
            reference = policy(input_ids=ids).logits
        expected = base(input_ids=ids).logits
    assert torch.allclose(reference, expected, atol=1e-5)
    assert not torch.allclose(trained, expected, atol=1e-3)


@pytest.mark.parametrize("method, loss, extra", [
    ("full", "sigmoid", {"pref_ftx": 0.5}),   # a frozen copy of the start is the reference
    ("freeze", "orpo", {"freeze_trainable_layers": 1}),  # reference-free
    ("lora", "simpo", {"simpo_gamma": 0.2}),
])
def test_dpo_methods_and_reference_free_losses(tiny_llama_dir, tmp_path, method, loss, extra):
    _, trainer = run_stage("dpo", tiny_llama_dir, tmp_path, finetuning_type=method, pref_loss=loss,
                           learning_rate=5e-3 if method == "full" else 1e-2, **extra)
    records = [record for record in _log(tmp_path) if "loss" in record]
    assert records[-1]["rewards/accuracies"] == 1.0, records
    if method == "full":
        assert trainer.ref_model is not None
        assert all(not p.requires_grad for p in trainer.ref_model.parameters())
    else:
        assert trainer.ref_model is None
    if loss == "orpo":
        assert "sft_loss" in trainer.state.log_history[0] and "odds_ratio_loss" in trainer.state.log_history[0]


@pytest.mark.parametrize("values", [{"pref_loss": "hinge"}, {"pref_loss": "ipo"},
                                    {"pref_loss": "kto_pair", "pref_bco_weight": 0.5},
                                    {"pref_bco_weight": 0.5}, {"dpo_label_smoothing": 0.1}, {"ld_alpha": 0.5}])
def test_every_reference_loss_trains(tiny_llama_dir, tmp_path, values):
    run_stage("dpo", tiny_llama_dir, tmp_path, finetuning_type="lora", max_steps=4, logging_steps=2, **values)
    records = [record for record in _log(tmp_path) if "loss" in record]
    assert records[-1]["loss"] < records[0]["loss"], records
    if values.get("pref_loss") == "ipo":  # IPO regresses the margin to 1 / (2 beta), i.e. a reward margin of 0.5
        assert records[-1]["rewards/margins"] == pytest.approx(0.5, abs=0.15)


def test_explicit_ref_model_with_adapters_is_loaded_merged(tiny_llama_dir, tmp_path, dpo_lora):
    adapter_dir, _, trained = dpo_lora
    _, trainer = run_stage("dpo", tiny_llama_dir, tmp_path, finetuning_type="lora", ref_model=str(tiny_llama_dir),
                           ref_model_adapters=str(adapter_dir), max_steps=1, logging_steps=1)
    ref = trainer.ref_model
    assert ref is not None and sum(p.numel() for p in ref.parameters() if p.requires_grad) == 0
    assert not any("lora_" in name for name, _ in ref.named_parameters())  # the adapter is merged in
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    policy = trained.accelerator.unwrap_model(trained.model).eval()
    with torch.no_grad():
        assert torch.allclose(ref(input_ids=ids).logits, policy(input_ids=ids).logits, atol=1e-4)


def test_ref_model_quantization_bit_quantizes_the_reference_copy(tiny_llama_dir, tmp_path):
    pytest.importorskip("bitsandbytes")
    _, trainer = run_stage("dpo", tiny_llama_dir, tmp_path, finetuning_type="full", ref_model_quantization_bit=8,
                           max_steps=2, logging_steps=1, learning_rate=5e-3)
    layers = [type(module).__name__ for module in trainer.ref_model.modules()]
    assert "Linear8bitLt" in layers, sorted(set(layers))
    records = [record for record in _log(tmp_path) if "loss" in record]
    # At step 1 the policy is the starting model: only 8-bit rounding separates it from its reference copy.
    assert abs(records[0]["rewards/chosen"]) < 0.1 and abs(records[0]["rewards/rejected"]) < 0.1, records[0]


def test_kto_separates_chosen_from_rejected(tiny_llama_dir, tmp_path):
    metrics, trainer = run_stage("kto", tiny_llama_dir, tmp_path, finetuning_type="freeze", freeze_trainable_layers=1,
                                 kto_chosen_weight=1.0, kto_rejected_weight=1.0, max_steps=24, logging_steps=6,
                                 with_eval=True)
    assert metrics["eval_rewards/chosen"] > 0 > metrics["eval_rewards/rejected"], metrics
    records = [record for record in _log(tmp_path) if "loss" in record]
    assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen"} <= set(records[0])
    assert "kl" in trainer.state.log_history[0]
    assert records[-1]["rewards/chosen"] > 0 > records[-1]["rewards/rejected"], records
    assert records[-1]["rewards/margins"] > records[0]["rewards/margins"]
    assert records[-1]["loss"] < records[0]["loss"]


@pytest.mark.parametrize("method", ["lora", "full"])
def test_reward_model_ranks_every_pair_and_loads_back_for_scoring(tiny_llama_dir, tmp_path, method):
    metrics, trainer = run_stage("rm", tiny_llama_dir, tmp_path, finetuning_type=method, with_eval=True,
                                 learning_rate=1e-2 if method == "lora" else 2e-3, max_steps=20)
    assert metrics["eval_accuracy"] == 1.0
    head = load_file(os.path.join(tmp_path, VALUE_HEAD_FILE))
    assert set(head) == {"v_head.summary.weight", "v_head.summary.bias"}
    if method == "full":  # the decoder's weights alone: loads with plain transformers
        assert not any(name.startswith(("v_head", "pretrained_model")) for name in
                       load_file(os.path.join(tmp_path, "model.safetensors")))
        cfg = tiny_config(model_name_or_path=str(tmp_path), finetuning_type="full")
    else:
        cfg = tiny_config(model_name_or_path=str(tiny_llama_dir), adapter_name_or_path=str(tmp_path))
    tokenizer = load_tokenizer(cfg)
    tokenizer.pad_token = tokenizer.eos_token
    reward_model = load_value_head_model(cfg, tokenizer)
    rows = pairwise_rows(tokenizer)
    collator = trainer.data_collator
    batch = collator([rows[i] for i in range(len(rows))])
    with torch.no_grad():
        chosen, rejected = reward_model.score(batch["input_ids"], batch["attention_mask"]).chunk(2)
        trained = trainer.accelerator.unwrap_model(trainer.model).eval()
        expected = trained.score(batch["input_ids"], batch["attention_mask"])
    assert (chosen > rejected).all()
    assert torch.allclose(torch.cat((chosen, rejected)), expected, atol=1e-4)

    # The API's scorer (infer/scoring.py) reads the same files and scores the same way.
    from tuneforge.infer.scoring import RewardScorer

    texts = ["User: Say hello.\nAssistant: Hello there!", "User: Give a colour.\nAssistant: Paris. And more"]
    scorer = RewardScorer(cfg.replace(stage="rm"))  # loads model, adapter and head from disk itself
    encoded = tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        ours = reward_model.score(encoded["input_ids"], encoded["attention_mask"])
    assert scorer.score(texts) == pytest.approx(ours.tolist(), abs=1e-4)


def test_scoring_a_model_without_value_head_says_what_to_do(tiny_llama_dir):
    from tuneforge.errors import ConfigError

    cfg = tiny_config(model_name_or_path=str(tiny_llama_dir), finetuning_type="full")
    with pytest.raises(ConfigError, match="not a reward model"):
        load_value_head_model(cfg, load_tokenizer(cfg))


def test_answer_logits_skip_prompt_positions_but_give_the_full_rows_logps(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    from tuneforge.train.preference.losses import sequence_logps
    from tuneforge.train.preference.trainer import answer_logits

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)).eval()
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 0, 0], [11, 12, 13, 14, 15, 16, 17, 18]])
    mask = (ids != 0).long()
    labels = torch.tensor([[-100, -100, -100, -100, 9, 10, -100, -100], [-100] * 5 + [16, 17, 18]])
    with torch.no_grad():
        logits, cut_labels, cut_mask = answer_logits(model, ids, mask, labels)
        full = model(input_ids=ids, attention_mask=mask).logits
    assert logits.shape[1] == 5 and cut_labels.shape[1] == 5 and cut_mask.shape[1] == 5  # from position 3 on
    expected, lengths = sequence_logps(full, labels)
    actual, cut_lengths = sequence_logps(logits, cut_labels)
    assert torch.allclose(actual, expected, atol=1e-5) and torch.equal(lengths, cut_lengths)


def test_reward_model_resumes_with_its_value_head(tiny_llama_dir, tmp_path, monkeypatch):
    run_stage("rm", tiny_llama_dir, tmp_path, finetuning_type="lora", max_steps=4, save_steps=2, logging_steps=2)
    saved = load_file(os.path.join(tmp_path, "checkpoint-4", VALUE_HEAD_FILE))["v_head.summary.weight"]
    restored = {}
    original = rm_recipe.load_value_head

    def spy(model, path, required=True):
        found = original(model, path, required)
        restored[str(path)] = model.v_head.summary.weight.detach().clone()
        return found

    monkeypatch.setattr(rm_recipe, "load_value_head", spy)
    _, trainer = run_stage("rm", tiny_llama_dir, tmp_path, finetuning_type="lora", max_steps=6, save_steps=2,
                           logging_steps=2)
    assert trainer.state.global_step == 6
    assert torch.equal(restored[os.path.join(str(tmp_path), "checkpoint-4")], saved)
