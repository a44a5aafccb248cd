"""The order prompts are drawn in: one seeded global shuffle (reshuffled each pass, a partial tail dropped),
the same on every rank; each rank takes its own slice of every global batch. A state_dict lets a resumed
run continue with the same prompts."""

from __future__ import annotations

from typing import Any

import torch

from ....data.prompt_rows import PromptRow
from ....errors import ConfigError


class PromptOrder:
    def __init__(self, rows: list[PromptRow], seed: int, rank: int, world_size: int, prompts_per_rank: int):
        if len(rows) < prompts_per_rank * world_size:
            raise ConfigError(f"the dataset has {len(rows)} usable prompts but one GRPO step takes "
                              f"{prompts_per_rank * world_size} (per_device_train_batch_size x "
                              "gradient_accumulation_steps x processes); add data or lower those")
        self.rows, self.rank, self.world_size = rows, rank, world_size
        self.global_batch_size = prompts_per_rank * world_size
        self.generator = torch.Generator().manual_seed(seed)
        self.order: list[int] = []
        self.position = 0

    def next_for_rank(self, count: int) -> tuple[list[PromptRow], list[int]]:
        """(this rank's `count` rows of the next global batch, their positions in that global batch)."""
        size = count * self.world_size
        if self.position + size > len(self.order):
            self.order = torch.randperm(len(self.rows), generator=self.generator).tolist()
            self.position = 0
        batch = self.order[self.position: self.position + size]
        self.position += size
        mine = range(self.rank * count, (self.rank + 1) * count)
        return [self.rows[batch[i]] for i in mine], list(mine)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "order": self.order, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.order, self.position = list(state["order"]), int(state["position"])
