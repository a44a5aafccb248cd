"""Stage ppo end to end on a tiny model: the reward rises, the LoRA reference is the base with the adapter off
(no second model), full tuning keeps a frozen reference, the run directory is complete, and the three reward
sources (full model, LoRA adapter, HTTP endpoint) score what they should."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

import tuneforge.train.stages.ppo.recipe as recipe
from tuneforge.config import make_config
from tuneforge.errors import ConfigError, UserError
from tuneforge.runtime import runtime
from tuneforge.train import run_train
from tuneforge.model.value_head import ValueHead
from tuneforge.train.stages.ppo.policy import VALUE_HEAD_FILE, save_value_head, saved_value_head
from tuneforge.train.stages.ppo.rewards import AdapterReward, ApiReward, ModelReward, check_reward_settings

RESPONSE_TOKENS = 8


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("ppo_prompts")
    rows = [{"instruction": f"Question {i}: say something.", "output": "ok"} for i in range(16)]
    (path / "prompts.json").write_text(json.dumps(rows))
    (path / "dataset_info.json").write_text(json.dumps({"prompts": {"file_name": "prompts.json"}}))
    return path


class TargetTokenReward:
    """A rule-based reward model: one point per response token from a fixed set of 100 token ids.

    The set is the 100 tokens whose output-embedding rows point furthest along one random direction, so
    a policy can raise all of them together by moving its last hidden state along that direction."""

    def __init__(self, model_dir):
        head = load_file(str(model_dir / "model.safetensors"))["lm_head.weight"]
        direction = torch.randn(head.shape[1], generator=torch.Generator().manual_seed(0))
        self.targets = set((head @ direction).topk(100).indices.tolist())

    def score(self, sequences, prompt_lengths):
        return torch.tensor([float(sum(token in self.targets for token in ids[start:]))
                             for ids, start in zip(sequences, prompt_lengths)])


def ppo_config(model_dir, data_dir, output_dir, **values):
    settings = dict(model_name_or_path=str(model_dir), stage="ppo", do_train=True, finetuning_type="lora",
                    dataset="prompts", dataset_dir=str(data_dir), template="default", cutoff_len=64,
                    output_dir=str(output_dir), per_device_train_batch_size=4, ppo_buffer_size=2, ppo_epochs=2,
                    learning_rate=5e-3, lr_scheduler_type="constant", max_steps=16, logging_steps=1,
                    report_to="none", reward_model="rule", reward_model_type="full", do_sample=True,
                    temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=RESPONSE_TOKENS, seed=1)
    settings.update(values)
    return make_config(settings)


def run_with_rule_reward(monkeypatch, cfg, model_dir):
    """Run stage ppo with the rule-based reward; return (metrics, log records, load_model calls)."""
    loaded = []
    original_load = recipe.load_model

    def counting_load(cfg, tokenizer, is_trainable=True):
        model = original_load(cfg, tokenizer, is_trainable)
        loaded.append((model, is_trainable))
        return model

    monkeypatch.setattr(recipe, "build_reward_source", lambda cfg, policy, tokenizer: TargetTokenReward(model_dir))
    monkeypatch.setattr(recipe, "load_model", counting_load)
    monkeypatch.setattr("tuneforge.model.loader.load_model", counting_load)  # the reference loads through it
    metrics = run_train(cfg)
    records = [json.loads(line) for line in open(f"{cfg.train.output_dir}/trainer_log.jsonl")]
    return metrics, records, loaded


def test_lora_ppo_raises_the_reward_with_the_base_model_as_reference(tiny_llama_dir, data_dir, tmp_path, monkeypatch):
    cfg = ppo_config(tiny_llama_dir, data_dir, tmp_path)
    metrics, records, loaded = run_with_rule_reward(monkeypatch, cfg, tiny_llama_dir)

    rewards = [record["reward"] for record in records]
    assert len(rewards) == 16
    print(rewards)
    assert sum(rewards[-4:]) / 4 > sum(rewards[:4]) / 4 + 0.3, rewards
    # The reference is the policy with its adapter disabled: at step 1 the adapter is still zero (B = 0),
    # so the policy and the reference agree exactly; and no second model was ever loaded.
    assert records[0]["kl"] == pytest.approx(0.0, abs=1e-5)
    assert records[-1]["kl"] > 0.1
    assert len(loaded) == 1 and loaded[0][1] is True
    for key in ("loss", "lr", "kl_coef", "elapsed", "remaining", "response_length"):
        assert key in records[-1]
    assert metrics["global_step"] == 16

    samples = [json.loads(line) for line in open(tmp_path / "ppo_samples.jsonl")]
    assert len(samples) == 16 * 8 and {"step", "prompt", "response", "score"} <= set(samples[0])
    assert samples[0]["prompt"].startswith("Human: Question")  # the default template's prompt
    assert (tmp_path / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "reward").exists()
    head = load_file(str(tmp_path / VALUE_HEAD_FILE))
    assert head["v_head.summary.weight"].shape == (1, 64)
    assert "chat_template" in json.loads((tmp_path / "tokenizer_config.json").read_text())


def test_full_ppo_keeps_a_frozen_reference_model(tiny_llama_dir, data_dir, tmp_path, monkeypatch):
    cfg = ppo_config(tiny_llama_dir, data_dir, tmp_path, finetuning_type="full", ppo_buffer_size=1, max_steps=2,
                     learning_rate=1e-3, save_steps=1)
    _, records, loaded = run_with_rule_reward(monkeypatch, cfg, tiny_llama_dir)
    assert [trainable for _, trainable in loaded] == [True, False]
    policy, reference = loaded[0][0], loaded[1][0]
    assert not any(param.requires_grad for param in reference.parameters())
    original = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    name = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(dict(reference.named_parameters())[name], dict(original.named_parameters())[name])
    assert not torch.equal(dict(policy.named_parameters())[name], dict(original.named_parameters())[name])
    assert len(records) == 2
    assert (tmp_path / "checkpoint-1" / VALUE_HEAD_FILE).is_file()  # save_steps: 1
    assert (tmp_path / "model.safetensors").is_file()


@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_resumed_run_continues_the_same_trajectory(tiny_llama_dir, data_dir, tmp_path, monkeypatch, method):
    settings = dict(finetuning_type=method, ppo_buffer_size=1, max_steps=4, save_steps=2,
                    learning_rate=5e-3 if method == "lora" else 1e-3)
    _, whole, _ = run_with_rule_reward(monkeypatch, ppo_config(tiny_llama_dir, data_dir, tmp_path / "whole",
                                                               **settings), tiny_llama_dir)
    checkpoint = tmp_path / "whole" / "checkpoint-2"
    assert (checkpoint / "ppo_state.pt").is_file() and (checkpoint / "trainer_state.json").is_file()
    _, resumed, _ = run_with_rule_reward(monkeypatch, ppo_config(tiny_llama_dir, data_dir, tmp_path / "resumed",
                                                                 resume_from_checkpoint=str(checkpoint), **settings),
                                         tiny_llama_dir)
    assert [record["step"] for record in resumed] == [3, 4]
    for key in ("loss", "reward", "kl", "kl_coef"):
        assert [record[key] for record in resumed] == pytest.approx([record[key] for record in whole[2:]],
                                                                    abs=1e-5), key


# ---- reward sources ------------------------------------------------------------------------------------

def _manual_scores(model, head, sequences):
    scores = []
    for ids in sequences:
        hidden = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1]
        scores.append(head(hidden[0, -1:].float()).item())
    return scores


def test_a_reward_model_scores_with_its_value_head_at_the_last_token(tiny_llama_dir, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)).eval()
    head = ValueHead(64, dropout=0.0)
    save_value_head(head, str(tmp_path))
    loaded_head = saved_value_head(str(tmp_path), model)
    assert torch.equal(loaded_head.summary.weight, head.summary.weight)
    sequences = [[5, 6, 7, 8, 9], [5, 6]]  # different lengths: right padding must not move the last token
    scores = ModelReward(model, loaded_head, pad_id=0).score(sequences, [2, 1])
    assert scores.tolist() == pytest.approx(_manual_scores(model, head, sequences), abs=1e-5)


def test_a_stage_rm_output_is_a_full_reward_model_for_ppo(tiny_llama_dir, tmp_path):
    from tuneforge.model.value_head import ValueHeadModel
    from tuneforge.train.stages.ppo.rewards import build_reward_source

    torch.manual_seed(0)
    reward_model = ValueHeadModel(AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)), dropout=0.0).eval()
    reward_model.save_pretrained(str(tmp_path / "rm"))  # what stage rm writes (full): weights + value head
    AutoTokenizer.from_pretrained(str(tiny_llama_dir)).save_pretrained(str(tmp_path / "rm"))
    cfg = make_config(dict(model_name_or_path=str(tiny_llama_dir), stage="ppo", reward_model=str(tmp_path / "rm"),
                           reward_model_type="full", finetuning_type="lora"))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    source = build_reward_source(cfg, policy=None, tokenizer=tokenizer)
    sequences = [[5, 6, 7, 8, 9], [5, 6]]
    expected = reward_model.score(torch.tensor([[5, 6, 7, 8, 9], [5, 6, 0, 0, 0]]),
                                  torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]))
    assert source.score(sequences, [2, 1]).tolist() == pytest.approx(expected.tolist(), abs=1e-5)
    assert not any(param.requires_grad for param in source.model.parameters())


def test_a_reward_adapter_scores_on_the_policy_base_and_hands_the_policy_back(tiny_llama_dir, tmp_path):
    torch.manual_seed(0)
    reward_model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)),
                                  LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    reward_model.save_pretrained(str(tmp_path / "rm"))
    head = ValueHead(64, dropout=0.0)
    save_value_head(head, str(tmp_path / "rm"))

    policy = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)),
                            LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    trainable_before = {name for name, param in policy.named_parameters() if param.requires_grad}
    source = AdapterReward(policy, str(tmp_path / "rm"), pad_id=0)
    sequences = [[5, 6, 7, 8, 9], [5, 6]]
    scores = source.score(sequences, [2, 1])
    assert scores.tolist() == pytest.approx(_manual_scores(reward_model.eval(), head, sequences), abs=1e-5)
    assert policy.active_adapter == "default"
    assert {name for name, param in policy.named_parameters() if param.requires_grad} == trainable_before


def test_an_http_reward_endpoint_gets_the_decoded_texts(tiny_llama_dir):
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append(payload)
            body = json.dumps({"scores": [len(text) for text in payload["messages"]]}
                              if self.path == "/good" else {"oops": 1}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    sequences = [tokenizer("hello world")["input_ids"], tokenizer("hi")["input_ids"]]
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        scores = ApiReward(f"{url}/good", tokenizer).score(sequences, [1, 1])
        texts = tokenizer.batch_decode(sequences, skip_special_tokens=False)
        assert received[0] == {"model": "model", "messages": texts}
        assert scores.tolist() == [float(len(text)) for text in texts]
        with pytest.raises(UserError, match=r'expected \{"scores": \[\.\.\.\]\} with 2 numbers'):
            ApiReward(f"{url}/bad", tokenizer).score(sequences, [1, 1])
    finally:
        server.shutdown()
    with pytest.raises(UserError, match="the scoring endpoint .* failed"):
        ApiReward(url + "/good", tokenizer, timeout=2).score(sequences, [1, 1])


# ---- up-front errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize("values, message", [
    ({"reward_model_type": "api", "reward_model": "saves/rm"}, "is not a URL"),
    ({"reward_model_type": "full", "reward_model": "http://x/score"}, "set reward_model_type: api"),
    ({"reward_model_type": "lora", "reward_model_adapters": "a"}, "apply to reward_model_type: full"),
    ({"reward_model_type": "full", "reward_model": "{tmp}/nope"}, "reward_model: directory .* does not exist"),
    ({"reward_model_type": "lora", "reward_model": "{model}"}, "holds no LoRA adapter"),
    ({"reward_model_type": "full", "reward_model": "{model}"}, "has no value_head.safetensors"),
])
def test_reward_settings_are_checked_before_anything_loads(values, message, tiny_llama_dir, tmp_path):
    values = {key: str(value).format(model=tiny_llama_dir, tmp=tmp_path) for key, value in values.items()}
    cfg = make_config({"stage": "ppo", "reward_model": "saves/rm", "reward_model_type": "lora", **values})
    with pytest.raises(ConfigError, match=message):
        check_reward_settings(cfg.rlhf)


def test_ppo_settings_that_cannot_run_are_refused(tiny_llama_dir, data_dir, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="stage ppo needs reward_model"):
        ppo_config(tiny_llama_dir, data_dir, tmp_path, reward_model=None)
    with pytest.raises(ConfigError, match="reward_model_type 'lora' needs finetuning_type lora"):
        ppo_config(tiny_llama_dir, data_dir, tmp_path, reward_model_type="lora", finetuning_type="full")
    with pytest.raises(ConfigError, match="report_to: tensorboard: stage ppo reports to its run directory only"):
        run_train(ppo_config(tiny_llama_dir, data_dir, tmp_path, report_to="tensorboard"))
    with pytest.raises(ConfigError, match="use_swanlab: stage ppo reports to its run directory only"):
        run_train(ppo_config(tiny_llama_dir, data_dir, tmp_path, use_swanlab=True))
    with pytest.raises(ConfigError, match="optim: adafactor is not available for stage ppo"):
        run_train(ppo_config(tiny_llama_dir, data_dir, tmp_path, optim="adafactor"))
    with pytest.raises(ConfigError, match="is not a stage ppo checkpoint"):
        (tmp_path / "checkpoint-1").mkdir()
        (tmp_path / "checkpoint-1" / "trainer_state.json").write_text("{}")
        cfg = ppo_config(tiny_llama_dir, data_dir, tmp_path / "resumed",
                         resume_from_checkpoint=str(tmp_path / "checkpoint-1"))
        run_with_rule_reward(monkeypatch, cfg, tiny_llama_dir)
    with monkeypatch.context() as patch:
        patch.setenv("WORLD_SIZE", "2")
        runtime.cache_clear()  # the runs above read the process facts already (tuneforge.runtime)
        with pytest.raises(ConfigError, match="stage ppo trains in one process"):
            run_train(ppo_config(tiny_llama_dir, data_dir, tmp_path))
    runtime.cache_clear()
    with pytest.raises(ConfigError, match="16 usable prompts but one PPO step takes 20"):
        run_train(ppo_config(tiny_llama_dir, data_dir, tmp_path / "small", ppo_buffer_size=5, reward_model_type="api",
                             reward_model="http://127.0.0.1:9/score"))


def test_a_diverged_ppo_run_stops_and_saves_no_policy(tiny_llama_dir, data_dir, tmp_path, monkeypatch):
    from tuneforge.train.run.divergence import TrainingDiverged

    cfg = ppo_config(tiny_llama_dir, data_dir, tmp_path / "out", learning_rate=1e37, max_steps=3, save_steps=1)
    with pytest.raises(TrainingDiverged) as raised:
        run_with_rule_reward(monkeypatch, cfg, tiny_llama_dir)
    message = str(raised.value)
    assert message.startswith("training diverged at step 1/3: ")
    assert "No good checkpoint was saved before the divergence." in message
    assert "learning_rate too high (1e+37" in message
    assert not (tmp_path / "out" / "adapter_model.safetensors").exists()
    assert not list((tmp_path / "out").glob("checkpoint-*"))


# ---- Ctrl-C ----------------------------------------------------------------------------------------------

def _interrupt_in_step(monkeypatch, at_step, signals):
    """PPOLoop.step sends `signals` SIGINTs to this process at the start of step `at_step` (a Ctrl-C then)."""
    import os
    import signal

    from tuneforge.train.stages.ppo.loop import PPOLoop

    step = PPOLoop.step

    def interrupted_step(self, prompts):
        if self.current_step == at_step:
            for _ in range(signals):
                os.kill(os.getpid(), signal.SIGINT)
        return step(self, prompts)

    monkeypatch.setattr(PPOLoop, "step", interrupted_step)


def test_the_first_ctrl_c_finishes_the_ppo_step_and_saves_a_checkpoint(tiny_llama_dir, data_dir, tmp_path,
                                                                        monkeypatch, caplog):
    import signal

    _interrupt_in_step(monkeypatch, at_step=2, signals=1)
    cfg = ppo_config(tiny_llama_dir, data_dir, tmp_path, ppo_buffer_size=1, max_steps=4)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        run_with_rule_reward(monkeypatch, cfg, tiny_llama_dir)
    assert signal.getsignal(signal.SIGINT) is handler  # the run's handler is gone again
    checkpoint = tmp_path / "checkpoint-2"
    assert (checkpoint / "ppo_state.pt").is_file() and (checkpoint / "trainer_state.json").is_file()
    assert [json.loads(line)["step"] for line in open(tmp_path / "trainer_log.jsonl")] == [1, 2]
    assert "Interrupted: finishing this step and saving a checkpoint" in caplog.text
    assert f"Stopped after step 2/4; checkpoint saved: {checkpoint}\n" in caplog.text
    assert f"Resume with: tuneforge train {tmp_path / 'run.yaml'} resume_from_checkpoint={checkpoint}" in caplog.text
    assert not (tmp_path / "adapter_model.safetensors").exists()  # an interrupted run has no final result

    # The printed command's checkpoint resumes: steps 3 and 4 only.
    monkeypatch.undo()
    _, resumed, _ = run_with_rule_reward(monkeypatch, ppo_config(
        tiny_llama_dir, data_dir, tmp_path / "resumed", ppo_buffer_size=1, max_steps=4,
        resume_from_checkpoint=str(checkpoint)), tiny_llama_dir)
    assert [record["step"] for record in resumed] == [3, 4]


def test_a_second_ctrl_c_stops_ppo_at_once_without_a_checkpoint(tiny_llama_dir, data_dir, tmp_path, monkeypatch):
    _interrupt_in_step(monkeypatch, at_step=2, signals=2)
    with pytest.raises(KeyboardInterrupt):
        run_with_rule_reward(monkeypatch, ppo_config(tiny_llama_dir, data_dir, tmp_path, ppo_buffer_size=1,
                                                     max_steps=4), tiny_llama_dir)
    assert not list(tmp_path.glob("checkpoint-*"))
    assert [json.loads(line)["step"] for line in open(tmp_path / "trainer_log.jsonl")] == [1]
