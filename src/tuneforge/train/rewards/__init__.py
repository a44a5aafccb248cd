"""Reward functions for online RL (stage grpo): built-ins, user functions and reward models.

    check_reward_funcs(rlhf) -> names          before anything loads
    build_reward_funcs(cfg, template, policy, tokenizer) -> [RewardFunc]
    score(funcs, batch) -> tensor [completions, funcs]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .builtin import Accuracy, Format, SoftOverlong, ToolCall
from .functions import (BUILTIN, RewardBatch, RewardError, RewardFunc, check_reward_funcs, load_user_function,
                        reward_names, reward_weights, score)

if TYPE_CHECKING:
    from ...config import Config

__all__ = ["BUILTIN", "RewardBatch", "RewardError", "RewardFunc", "build_reward_funcs", "check_reward_funcs",
           "reward_names", "reward_weights", "score"]


def build_reward_funcs(cfg: Config, template: Any, policy: Any, tokenizer: Any) -> list[RewardFunc]:
    """The functions of `reward_funcs`, in order. `reward_model` reuses stage ppo's scorers (a stage rm
    model, full or LoRA, or an HTTP endpoint) on prompt + completion ids."""
    rlhf = cfg.rlhf
    funcs = []
    for name in reward_names(rlhf):
        if name == "accuracy":
            funcs.append(RewardFunc(name, Accuracy(template.thought_words)))
        elif name == "format":
            funcs.append(RewardFunc(name, Format(template.thought_words)))
        elif name == "tool_call":
            funcs.append(RewardFunc(name, ToolCall(template)))
        elif name == "length":
            assert rlhf.soft_cache_length is not None, "check_reward_funcs requires it"
            limit = rlhf.soft_max_length if rlhf.soft_max_length is not None else rlhf.max_completion_length
            funcs.append(RewardFunc(name, SoftOverlong(limit, rlhf.soft_cache_length)))
        elif name == "reward_model":
            funcs.append(RewardFunc(name, _model_scorer(cfg, policy, tokenizer)))
        else:
            funcs.append(RewardFunc(name, load_user_function(name)))
    return funcs


def _model_scorer(cfg: Config, policy: Any, tokenizer: Any) -> Any:
    from ..stages.ppo.rewards import build_reward_source

    source = build_reward_source(cfg, policy, tokenizer)

    def reward_model(prompt_ids: list[list[int]], completion_ids: list[list[int]], **_: Any) -> list[float]:
        sequences = [list(p) + (list(c) or [tokenizer.pad_token_id]) for p, c in zip(prompt_ids, completion_ids)]
        return source.score(sequences, [len(p) for p in prompt_ids]).tolist()

    return reward_model
