"""Stage grpo end to end on the tiny llama: the reward rises, the run directory is complete, LoRA's
reference is the adapter switched off (no second model) while full tuning loads one, beta 0 loads none,
dynamic sampling replaces flat groups, and a resumed run reproduces the uninterrupted one."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import tuneforge.train.stages.grpo.recipe as recipe
from tuneforge.config import make_config
from tuneforge.train import run_train

REWARD_FILE = '''
import json, os
TARGETS = set(json.load(open(os.path.join(os.path.dirname(__file__), "targets.json"))))
def target_tokens(completion_ids, **kwargs):
    return [float(sum(token in TARGETS for token in ids)) for ids in completion_ids]
def rare_tokens(completion_ids, **kwargs):  # mostly 0 for a whole group: flat groups for dynamic sampling
    return [float(ids[0] in TARGETS) for ids in completion_ids]
'''


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_llama_dir):
    """Prompts, and a rule reward: one point per completion token from a fixed set of 100 token ids (those
    whose output-embedding rows point furthest along one random direction, so the policy can raise them all
    by moving its last hidden state)."""
    path = tmp_path_factory.mktemp("grpo")
    head = load_file(str(tiny_llama_dir / "model.safetensors"))["lm_head.weight"]
    direction = torch.randn(head.shape[1], generator=torch.Generator().manual_seed(0))
    (path / "targets.json").write_text(json.dumps((head @ direction).topk(100).indices.tolist()))
    (path / "rule_reward.py").write_text(REWARD_FILE)
    rows = [{"instruction": f"Question {i}: say something.", "output": str(i)} for i in range(16)]
    (path / "prompts.json").write_text(json.dumps(rows))
    (path / "dataset_info.json").write_text(json.dumps({"prompts": {"file_name": "prompts.json"}}))
    return path


def grpo_config(model_dir, workdir, output_dir, **values):
    settings = dict(model_name_or_path=str(model_dir), stage="grpo", do_train=True, finetuning_type="lora",
                    dataset="prompts", dataset_dir=str(workdir), template="default", cutoff_len=64,
                    output_dir=str(output_dir), per_device_train_batch_size=2, num_generations=4,
                    learning_rate=2e-2, lr_scheduler_type="constant", max_steps=12, logging_steps=1,
                    report_to="none", reward_funcs=f"{workdir}/rule_reward.py:target_tokens", do_sample=True,
                    temperature=1.0, top_p=1.0, top_k=0, max_completion_length=8, seed=1)
    settings.update(values)
    return make_config(settings)


def records(output_dir):
    return [json.loads(line) for line in open(output_dir / "trainer_log.jsonl")]


def counting_loads(monkeypatch):
    loaded = []
    original = recipe.load_model

    def load(cfg, tokenizer, is_trainable=True):
        loaded.append(is_trainable)
        return original(cfg, tokenizer, is_trainable)

    monkeypatch.setattr(recipe, "load_model", load)
    monkeypatch.setattr("tuneforge.model.loader.load_model", load)  # the reference loads through it
    return loaded


def test_the_rule_reward_rises_and_the_run_directory_is_complete(tiny_llama_dir, workdir, tmp_path, monkeypatch):
    loaded = counting_loads(monkeypatch)
    metrics = run_train(grpo_config(tiny_llama_dir, workdir, tmp_path))
    log = records(tmp_path)
    rewards = [record["reward"] for record in log]
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    assert last > first + 1.0, rewards  # one point per target token, 8 tokens per completion
    assert loaded == [True]  # beta 0: no reference model
    assert [record["step"] for record in log] == list(range(1, 13))
    name = f"{workdir}/rule_reward.py:target_tokens"
    for key in ("loss", "reward_std", "completion_length", "clip_ratio", "entropy", "frac_reward_zero_std",
                f"rewards/{name}/mean", f"rewards/{name}/std"):
        assert key in log[0], key
    assert "kl" not in log[0]  # beta 0
    assert log[0][f"rewards/{name}/mean"] == log[0]["reward"] and log[0]["completion_length"] == 8.0
    samples = [json.loads(line) for line in open(tmp_path / "grpo_samples.jsonl")]
    assert len(samples) == 12 * 2 * 4 and samples[0]["step"] == 1 and set(samples[0]["rewards"]) == {name}
    assert metrics["train_reward_last"] == rewards[-1]
    assert (tmp_path / "adapter_model.safetensors").is_file() and (tmp_path / "all_results.json").is_file()


def test_lora_reference_is_the_adapter_switched_off(tiny_llama_dir, workdir, tmp_path, monkeypatch):
    loaded = counting_loads(monkeypatch)
    run_train(grpo_config(tiny_llama_dir, workdir, tmp_path, beta=0.1, max_steps=2))
    log = records(tmp_path)
    assert loaded == [True]  # no second model
    assert log[0]["kl"] == pytest.approx(0.0, abs=1e-7)  # LoRA starts at the base: policy == reference
    assert log[1]["kl"] > 0


def test_full_tuning_with_beta_loads_a_frozen_reference(tiny_llama_dir, workdir, tmp_path, monkeypatch):
    loaded = counting_loads(monkeypatch)
    run_train(grpo_config(tiny_llama_dir, workdir, tmp_path, finetuning_type="full", beta=0.1, max_steps=2,
                          learning_rate=1e-3, num_iterations=2, loss_type="grpo"))
    log = records(tmp_path)
    assert loaded == [True, False]
    assert log[0]["kl"] >= 0 and log[1]["kl"] > 0
    assert (tmp_path / "model.safetensors").is_file()


def test_dynamic_sampling_replaces_groups_whose_rewards_are_all_equal(tiny_llama_dir, workdir, tmp_path):
    reward = f"{workdir}/rule_reward.py:rare_tokens"
    plain = tmp_path / "plain"
    run_train(grpo_config(tiny_llama_dir, workdir, plain, reward_funcs=reward, max_steps=2))
    dynamic = tmp_path / "dynamic"
    run_train(grpo_config(tiny_llama_dir, workdir, dynamic, reward_funcs=reward, max_steps=2,
                          dynamic_sampling=True, max_resample_times=3))
    flat_plain = [record["frac_reward_zero_std"] for record in records(plain)]
    flat_dynamic = [record["frac_reward_zero_std"] for record in records(dynamic)]
    assert sum(flat_dynamic) < sum(flat_plain), (flat_plain, flat_dynamic)


def test_resume_reproduces_the_uninterrupted_run(tiny_llama_dir, workdir, tmp_path):
    full = tmp_path / "full"
    run_train(grpo_config(tiny_llama_dir, workdir, full, max_steps=4, save_steps=2, num_iterations=2))
    resumed = tmp_path / "resumed"
    shutil.copytree(full, resumed, ignore=shutil.ignore_patterns("checkpoint-4"))
    run_train(grpo_config(tiny_llama_dir, workdir, resumed, max_steps=4, save_steps=2, num_iterations=2,
                          resume_from_checkpoint=str(resumed / "checkpoint-2")))
    expected, got = records(full), records(resumed)
    assert [r["step"] for r in got] == [1, 2, 3, 4]
    for before, after in zip(expected[2:], got[2:]):
        for key in ("loss", "reward", "completion_length", "entropy"):
            assert after[key] == pytest.approx(before[key], rel=1e-4, abs=1e-6), (key, before, after)
    samples = [json.loads(line) for line in open(resumed / "grpo_samples.jsonl")]
    assert [s["step"] for s in samples].count(3) == 8 and len(samples) == 4 * 8  # no duplicates of steps 3-4
