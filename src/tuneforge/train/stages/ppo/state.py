"""PPO checkpoints that resume on the same trajectory.

A checkpoint-N folder holds the policy (adapter or full weights), its value head and the tokenizer, like
the final output, plus `ppo_state.pt`: optimizer, LR scheduler, KL coefficient, score moments, the prompt
order and position, the mini-batch shuffling generator and the RNG that sampling draws from. It is written
into output_dir/.staging and renamed into place only when complete (train/checkpoints.py), and
trainer_state.json (written last) marks it complete, as for every other stage.
"""

from __future__ import annotations

import glob
import os
from typing import TYPE_CHECKING, Any

import torch

from ....errors import ConfigError
from ...run.checkpoints import write_loop_checkpoint

if TYPE_CHECKING:
    from .loop import PPOLoop

PPO_STATE = "ppo_state.pt"


class PromptBatches:
    """Endless shuffled batches of prompt ids (seeded, reshuffled every pass; a partial tail is dropped),
    with a state_dict so a resumed run continues with the same prompts."""

    def __init__(self, prompts: list[list[int]], batch_size: int, seed: int):
        self.prompts, self.batch_size = prompts, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.order: list[int] = []
        self.position = 0

    def __iter__(self) -> "PromptBatches":
        return self

    def __next__(self) -> list[list[int]]:
        if self.position + self.batch_size > len(self.order):
            self.order = torch.randperm(len(self.prompts), generator=self.generator).tolist()
            self.position = 0
        batch = self.order[self.position: self.position + self.batch_size]
        self.position += self.batch_size
        return [self.prompts[i] for i in batch]

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "order": self.order, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.order, self.position = list(state["order"]), int(state["position"])


def save_checkpoint(loop: PPOLoop, batches: PromptBatches, save_model: Any, output_dir: str, step: int) -> str:
    """Write checkpoint-<step> atomically; `save_model(folder)` writes the policy, head and tokenizer."""
    state = {"step": step, "loop": loop.state_dict(), "batches": batches.state_dict(),
             "optimizer": loop.optimizer.state_dict(), "scheduler": loop.scheduler.state_dict()}
    return write_loop_checkpoint(output_dir, step, save_model, PPO_STATE, state,
                                 {"max_steps": loop.settings.max_steps, "stage": "ppo"})


def load_checkpoint(path: str, loop: PPOLoop, batches: PromptBatches, value_head: torch.nn.Module) -> int:
    """Restore a checkpoint written by save_checkpoint into the loop; returns its step."""
    file = os.path.join(path, PPO_STATE)
    if not os.path.isfile(file):
        raise ConfigError(f"resume_from_checkpoint: {path} is not a stage ppo checkpoint (no {PPO_STATE}); "
                          "resume from a checkpoint-N of a ppo run, or start a fresh run")
    state = torch.load(file, map_location="cpu", weights_only=False)
    _load_policy_weights(loop.policy, path)
    from .policy import saved_value_head

    value_head.load_state_dict(saved_value_head(path, loop.policy).state_dict())
    loop.optimizer.load_state_dict(state["optimizer"])
    loop.scheduler.load_state_dict(state["scheduler"])
    loop.load_state_dict(state["loop"])
    batches.load_state_dict(state["batches"])
    torch.set_rng_state(state["rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(state["step"])


def _load_policy_weights(policy: Any, path: str) -> None:
    from safetensors.torch import load_file

    if hasattr(policy, "peft_config"):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(policy, load_file(os.path.join(path, "adapter_model.safetensors")))
        return
    weights: dict[str, torch.Tensor] = {}
    for file in sorted(glob.glob(os.path.join(path, "*.safetensors"))):
        if os.path.basename(file) != "value_head.safetensors":
            weights.update(load_file(file))
    missing, _ = policy.load_state_dict(weights, strict=False)
    tied = {"lm_head.weight"} if getattr(policy.config, "tie_word_embeddings", False) else set()
    if set(missing) - tied:
        raise ConfigError(f"resume_from_checkpoint: {path} lacks weights {sorted(set(missing) - tied)[:3]}; "
                          "it is not a checkpoint of this model")
