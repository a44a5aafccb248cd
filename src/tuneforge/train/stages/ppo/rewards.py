"""Where PPO's scores come from: `reward_model_type` full | lora | api.

Every source has `score(sequences, prompt_lengths) -> tensor[batch]`, where each sequence is the token
ids of prompt + response (no padding) and prompt_lengths say where each response starts. A reward model's score is its value head at the last token, as in
stage rm.

- full: a separate reward model directory (stage rm output with full/freeze, or base + reward adapters
  through `reward_model_adapters`), optionally quantized with `reward_model_quantization_bit`.
- lora: a reward LoRA adapter on the policy's own base model: loaded as a second adapter named "reward",
  switched on only while scoring, so no second copy of the base model is held.
- api: an HTTP endpoint. We POST {"model": "model", "messages": [decoded prompt+response, ...]} and read
  {"scores": [...]}, the protocol LLaMA-Factory uses (our `/v1/score/evaluation` answers it).
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any, Protocol

import torch

from ....errors import ConfigError, UserError
from ...preference.reference import adapter_paths
from .policy import saved_value_head

if TYPE_CHECKING:
    from ....config import Config
    from ....config.groups import RlhfArgs

logger = logging.getLogger("tuneforge.train")

REWARD_ADAPTER = "reward"


class RewardSource(Protocol):
    def score(self, sequences: list[list[int]], prompt_lengths: list[int]) -> torch.Tensor: ...


def right_padded(sequences: list[list[int]], pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(ids) for ids in sequences)
    pad_id = 0 if pad_id is None else pad_id  # padding is masked out: any id will do
    input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
    return input_ids.to(device), attention_mask.to(device)


def last_token_scores(model: Any, head: torch.nn.Module, sequences: list[list[int]], pad_id: int
                      ) -> torch.Tensor:
    device = next(model.parameters()).device
    input_ids, attention_mask = right_padded(sequences, pad_id, device)
    with torch.no_grad():
        output = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                       use_cache=False)
        values = head.to(device)(output.hidden_states[-1].float())
    last = attention_mask.sum(dim=1) - 1
    return values[torch.arange(len(sequences), device=device), last].float().cpu()


class ModelReward:
    """A separate reward model with its value head (reward_model_type: full)."""

    def __init__(self, model: Any, head: torch.nn.Module, pad_id: int):
        self.model, self.head, self.pad_id = model, head, pad_id

    def score(self, sequences: list[list[int]], prompt_lengths: list[int] | None = None) -> torch.Tensor:
        return last_token_scores(self.model, self.head, sequences, self.pad_id)


class AdapterReward:
    """The reward adapter on the policy's base model (reward_model_type: lora)."""

    def __init__(self, policy: Any, adapter_path: str, pad_id: int):
        policy.load_adapter(adapter_path, adapter_name=REWARD_ADAPTER, is_trainable=False)
        self.policy, self.head, self.pad_id = policy, saved_value_head(adapter_path, policy), pad_id

    def score(self, sequences: list[list[int]], prompt_lengths: list[int] | None = None) -> torch.Tensor:
        trained = self.policy.active_adapter
        # set_adapter also moves requires_grad to the active adapter; switching back restores the policy's.
        self.policy.set_adapter(REWARD_ADAPTER)
        try:
            return last_token_scores(self.policy, self.head, sequences, self.pad_id)
        finally:
            self.policy.set_adapter(trained)


class ApiReward:
    """An HTTP scoring endpoint (reward_model_type: api)."""

    def __init__(self, url: str, tokenizer: Any, timeout: float = 120.0):
        self.url, self.tokenizer, self.timeout = url, tokenizer, timeout

    def score(self, sequences: list[list[int]], prompt_lengths: list[int] | None = None) -> torch.Tensor:
        messages = self.tokenizer.batch_decode(sequences, skip_special_tokens=False)
        body = json.dumps({"model": "model", "messages": messages}).encode()
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise UserError(f"reward_model: the scoring endpoint {self.url} failed ({error}); check that the "
                            "server runs (e.g. `tuneforge api` with a reward model) and answers "
                            '{"scores": [...]}') from None
        scores = payload.get("scores") if isinstance(payload, dict) else None
        if not isinstance(scores, list) or len(scores) != len(sequences):
            raise UserError(f"reward_model: {self.url} answered {str(payload)[:200]!r}; expected "
                            f'{{"scores": [...]}} with {len(sequences)} numbers')
        return torch.tensor([float(score) for score in scores])


def check_reward_settings(rlhf: RlhfArgs) -> None:
    """The reward model settings, checked before any weights load."""
    # A missing reward_model and a LoRA reward model without LoRA training are config errors (config/checks.py);
    # "" only keeps the checks below total.
    kind, path = rlhf.reward_model_type, rlhf.reward_model or ""
    if kind == "api" and not path.startswith(("http://", "https://")):
        raise ConfigError(f"reward_model: {path!r} is not a URL; reward_model_type: api needs "
                          "http(s)://host:port/path of a scoring endpoint")
    if kind != "api" and path.startswith(("http://", "https://")):
        raise ConfigError(f"reward_model: {path!r} is a URL; set reward_model_type: api")
    if kind == "lora" and (rlhf.reward_model_adapters or rlhf.reward_model_quantization_bit):
        raise ConfigError("reward_model_adapters / reward_model_quantization_bit apply to reward_model_type: "
                          "full; a lora reward model is one adapter on the policy's base")
    if kind != "api":
        _check_reward_dir(kind, path, adapter_paths(rlhf.reward_model_adapters))


def _check_reward_dir(kind: str, path: str, adapters: list[str]) -> None:
    """A local reward model must exist and hold the value head that stage rm saves (hub ids load later)."""
    from ....model.value_head import read_value_head

    if not os.path.isdir(path):
        if kind == "lora" or path.startswith(("/", ".", "~")):
            raise ConfigError(f"reward_model: directory {path!r} does not exist; point it at the output_dir of a "
                              "stage rm run")
        return
    if kind == "lora" and not os.path.isfile(os.path.join(path, "adapter_config.json")):
        raise ConfigError(f"reward_model: {path!r} holds no LoRA adapter (adapter_config.json); for a full reward "
                          "model set reward_model_type: full")
    head_dir = adapters[-1] if adapters else path
    if os.path.isdir(head_dir) and read_value_head(head_dir) is None:
        raise ConfigError(f"reward_model: {head_dir!r} has no value_head.safetensors: it is not a reward model. "
                          "Train one with stage: rm and point reward_model at its output_dir")


def build_reward_source(cfg: Config, policy: Any, tokenizer: Any) -> RewardSource:
    rlhf = cfg.rlhf
    kind, path = rlhf.reward_model_type, rlhf.reward_model
    assert path is not None, "config/checks.py refuses stage ppo without reward_model"
    pad_id = tokenizer.pad_token_id
    if kind == "api":
        logger.info("Reward: HTTP endpoint %s", path)
        return ApiReward(path, tokenizer)
    if kind == "lora":
        logger.info("Reward: LoRA adapter %s on the policy's base model", path)
        return AdapterReward(policy, path, pad_id)

    from ....model.value_head import load_value_head_model

    # A full reward model loads as stage rm saved it: base (+ merged adapters) with the head of the last
    # adapter, else of the model directory; frozen, in eval mode.
    adapters = adapter_paths(rlhf.reward_model_adapters)
    reward_cfg = cfg.replace(model_name_or_path=path, adapter_name_or_path=adapters or None,
                             quantization_bit=rlhf.reward_model_quantization_bit,
                             finetuning_type="lora" if adapters else "full")
    reward_model = load_value_head_model(reward_cfg, tokenizer, is_trainable=False)
    logger.info("Reward: model %s", path)
    return ModelReward(reward_model.pretrained_model, reward_model.v_head, pad_id)
