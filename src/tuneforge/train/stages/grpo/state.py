"""GRPO checkpoints that resume on the same trajectory.

checkpoint-N holds the policy (adapter or full weights) and the tokenizer, like the final output, plus
`grpo_state.pt`: optimizer, LR scheduler, the prompt order and position, the history of step statistics and
the global RNG. Sampling itself is seeded per (step, prompt, sample) (sampling.py), so the resumed run draws
the completions the uninterrupted run drew. Written into output_dir/.staging and renamed into place when
complete; trainer_state.json (written last) marks it complete, as for every other stage.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from ....errors import ConfigError
from ...run.checkpoints import write_loop_checkpoint
from ..ppo.state import _load_policy_weights as load_policy_weights

if TYPE_CHECKING:
    from .batches import PromptOrder
    from .loop import GRPOLoop

GRPO_STATE = "grpo_state.pt"


def save_checkpoint(loop: GRPOLoop, order: PromptOrder, save_model: Callable[[str], Any], output_dir: str,
                    step: int) -> str:
    state = {"step": step, "history": list(loop.history), "order": order.state_dict(),
             "optimizer": loop.optimizer.state_dict(), "scheduler": loop.scheduler.state_dict()}
    return write_loop_checkpoint(output_dir, step, save_model, GRPO_STATE, state,
                                 {"max_steps": loop.settings.max_steps, "stage": "grpo"})


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
