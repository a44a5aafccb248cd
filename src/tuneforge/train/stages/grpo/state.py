"""GRPO checkpoints that resume on the same trajectory.

checkpoint-N holds the policy (adapter or full weights) and the tokenizer, like the final output, plus
`grpo_state.pt`: optimizer, LR scheduler, the prompt order and position, the history of step statistics and
the global RNG. Sampling itself is seeded per (step, prompt, sample) (sampling.py), so the resumed run draws
the completions the uninterrupted run drew. Written into output_dir/.staging and renamed into place when
complete; trainer_state.json (written last) marks it complete, as for every other stage.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from ....errors import ConfigError
from ...run.checkpoints import STAGING_DIR, TRAINER_STATE, publish_checkpoint
from ..ppo.state import _load_policy_weights as load_policy_weights

if TYPE_CHECKING:
    from .batches import PromptOrder
    from .loop import GRPOLoop

GRPO_STATE = "grpo_state.pt"


def save_checkpoint(loop: GRPOLoop, order: PromptOrder, save_model: Callable[[str], Any], output_dir: str,
                    step: int) -> str:
    staged = os.path.join(output_dir, STAGING_DIR, f"checkpoint-{step}")
    os.makedirs(staged, exist_ok=True)
    save_model(staged)
    state = {"step": step, "history": list(loop.history), "order": order.state_dict(),
             "optimizer": loop.optimizer.state_dict(), "scheduler": loop.scheduler.state_dict(),
             "rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    torch.save(state, os.path.join(staged, GRPO_STATE))
    with open(os.path.join(staged, TRAINER_STATE), "w", encoding="utf-8") as handle:  # last: marks it complete
        json.dump({"global_step": step, "max_steps": loop.settings.max_steps, "stage": "grpo"}, handle)
    return publish_checkpoint(staged, output_dir)


def load_checkpoint(path: str, loop: GRPOLoop, order: PromptOrder) -> int:
    file = os.path.join(path, GRPO_STATE)
    if not os.path.isfile(file):
        raise ConfigError(f"resume_from_checkpoint: {path} is not a stage grpo checkpoint (no {GRPO_STATE}); "
                          "resume from a checkpoint-N of a grpo run, or start a fresh run")
    state = torch.load(file, map_location="cpu", weights_only=False)
    load_policy_weights(loop.policy, path)
    loop.optimizer.load_state_dict(state["optimizer"])
    loop.scheduler.load_state_dict(state["scheduler"])
    loop.history = list(state["history"])
    order.load_state_dict(state["order"])
    torch.set_rng_state(state["rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(state["step"])
