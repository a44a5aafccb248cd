"""Reward scores: texts -> one float each, from a reward model (the output of `stage: rm`).

Two layouts of a reward model are read:
  - LLaMA-Factory's: a causal LM (+ LoRA adapter) with `value_head.safetensors` (or `value_head.bin`)
    beside it holding `v_head.summary.weight` [1, hidden] and `v_head.summary.bias` [1]; the score is that
    linear head on the last layer's hidden state of the text's last token (looked for in the last adapter
    directory, then in the model directory, as LLaMA-Factory does);
  - transformers' `...ForSequenceClassification` with one label (trl's RewardTrainer output): its logit.
Texts are tokenized as they are (no chat template, no special tokens added), right-padded, truncated to
`max_length` (default: the model's max_position_embeddings), as in LLaMA-Factory's API.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ConfigError
from ..model.value_head import VALUE_HEAD_BIN, VALUE_HEAD_FILE

if TYPE_CHECKING:
    from ..config import Config
    from ..config.groups import MethodArgs

VALUE_HEAD_FILES = (VALUE_HEAD_FILE, VALUE_HEAD_BIN)
NEEDS_REWARD_MODEL = "needs a reward model (stage rm output)"


def find_value_head(directories: list[str]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(weight [1, hidden], bias [1]) from the first directory holding a value head file; None if none does."""
    from ..model.value_head import read_value_head

    for directory in directories:
        state = read_value_head(directory)
        if state is None:
            continue
        try:
            return state["v_head.summary.weight"], state["v_head.summary.bias"]
        except KeyError:
            raise ConfigError(f"{directory}: its value head should hold v_head.summary.weight and "
                              f"v_head.summary.bias, found {sorted(state)}") from None
    return None


def is_reward_model(method: MethodArgs) -> bool:
    """Whether the config asks to serve scores rather than chat: `stage: rm`. (LLaMA-Factory serves scores
    for every stage but sft; a DPO / KTO / PPO output is a chat model, so here those chat.)"""
    return method.stage == "rm"


class RewardScorer:
    def __init__(self, cfg: Config, *, model: Any = None, tokenizer: Any = None, value_head: Any = None):
        self.cfg = cfg
        if model is None or tokenizer is None:
            model, tokenizer, value_head = load_reward_model(self.cfg)
        self.model, self.tokenizer = model, tokenizer
        self.value_head = value_head  # (weight, bias), or None for a sequence-classification model
        self.tokenizer.padding_side = "right"
        if self.tokenizer.pad_token is None:  # pad ids are masked out; any token will do
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # One call at a time: padding/truncation settings live in the shared Rust tokenizer.
        self._lock = threading.Lock()

    def score(self, texts: list[str], max_length: int | None = None) -> list[float]:
        with self._lock:
            return self._score(texts, max_length)

    @torch.inference_mode()
    def _score(self, texts: list[str], max_length: int | None) -> list[float]:
        limit = max_length or getattr(self.model.config, "max_position_embeddings", 1024)
        device = next(self.model.parameters()).device
        inputs = self.tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt",
                                add_special_tokens=False).to(device)
        last = inputs["attention_mask"].sum(dim=-1) - 1
        rows = torch.arange(len(texts), device=device)
        if self.value_head is None:
            return self.model(**inputs).logits[:, 0].float().tolist()
        hidden = self.model(**inputs, output_hidden_states=True, use_cache=False).hidden_states[-1]
        weight, bias = (tensor.to(device=device, dtype=hidden.dtype) for tensor in self.value_head)
        values = hidden[rows, last] @ weight.T + bias
        return values[:, 0].float().tolist()


def load_reward_model(cfg: Config) -> tuple[Any, Any, Any]:
    """(model, tokenizer, value head or None) for scoring; ConfigError when cfg names no reward model."""
    from transformers import AutoConfig

    from ..data.tokenizer import load_tokenizer
    from ..model.loader import load_model, resolve_model_path, with_local_model

    cfg = with_local_model(cfg)
    model_path = resolve_model_path(cfg)  # the directory with_local_model settled on
    config = AutoConfig.from_pretrained(model_path, trust_remote_code=cfg.model.trust_remote_code)
    tokenizer = load_tokenizer(cfg)
    if any(name.endswith("ForSequenceClassification") for name in (config.architectures or ())):
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(model_path).eval()
        if getattr(model.config, "num_labels", 1) != 1:
            raise ConfigError(f"model_name_or_path: {model_path} classifies into "
                              f"{model.config.num_labels} labels; scoring {NEEDS_REWARD_MODEL} with one output")
        return model, tokenizer, None
    adapters = cfg.model.adapter_name_or_path or []
    places = [*adapters[-1:], model_path]
    value_head = find_value_head(places)
    if value_head is None:
        raise ConfigError(f"scores: {NEEDS_REWARD_MODEL}: no {' or '.join(VALUE_HEAD_FILES)} in "
                          f"{' or '.join(places)}. Point adapter_name_or_path (or model_name_or_path) at the "
                          "output_dir of a `stage: rm` run")
    model = load_model(cfg, tokenizer, is_trainable=False)
    return model, tokenizer, value_head
