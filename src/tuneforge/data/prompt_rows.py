"""Prompt rows for online RL (stage grpo): the prompt rendered by the template, the answer as `solution`,
and every other column of the row, kept for the reward functions.

    load_prompt_rows(cfg, tokenizer, template) -> list[PromptRow]

The prompt ids are the template's `encode_oneturn` prompt, the same call that renders SFT's last turn and
the prompt of stage ppo / predict_with_generate, so the policy sees in RL the very tokens it saw in SFT and
will see when served (system, tools, thinking switches included). Rows are the canonical rows of the
shared loader (any of our formats, dataset_info.json, row checks and reports); rows whose prompt has an
even number of messages cannot be rendered as one prompt and are dropped, as LLaMA-Factory's unsupervised
processor does. A prompt longer than cutoff_len keeps its last cutoff_len tokens' room via infer_seqlen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import DataError
from .loader import canonical_features, load_and_merge
from .processors.common import infer_seqlen
from .schema import Role

if TYPE_CHECKING:
    from ..config import Config

logger = logging.getLogger("tuneforge.data")

CANONICAL = ("prompt", "response", "system", "tools", "images", "videos", "audios")


@dataclass
class PromptRow:
    index: int  # position in the merged dataset, for error messages
    prompt_ids: list[int]
    solution: str | None  # the row's answer text (None: the row has none)
    system: str
    tools: str
    messages: list[dict[str, str]]  # the prompt messages, for reward functions that want the conversation
    extra: dict[str, Any] = field(default_factory=dict)  # the file's other columns

    def columns(self) -> dict[str, Any]:
        """What reward functions receive besides prompts and completions (TRL passes every dataset column)."""
        return {**self.extra, "solution": self.solution, "system": self.system, "tools": self.tools,
                "messages": self.messages}


def load_prompt_rows(cfg: Config, tokenizer: Any, template: Any, max_completion_length: int
                     ) -> list[PromptRow]:
    dataset, _ = load_and_merge(cfg.data.dataset, cfg.data, cfg.model, cfg.train, "grpo")
    if dataset is None:
        raise DataError("stage grpo needs a prompt dataset: set dataset")
    for column in ("images", "videos", "audios"):
        if any(value for value in dataset[column]):
            raise DataError(f"dataset: stage grpo trains on text prompts only, and this dataset has {column}; "
                            "remove the media columns from its dataset_info.json entry")
    extra_names = [name for name in dataset.column_names if name not in canonical_features()]
    rows, dropped = [], 0
    for index, row in enumerate(dataset):
        if len(row["prompt"]) % 2 == 0:
            dropped += 1
            continue
        rows.append(render_row(index, row, tokenizer, template, cfg.data.cutoff_len, max_completion_length,
                               {name: row[name] for name in extra_names}))
    if dropped:
        logger.warning("stage grpo: %d rows dropped whose prompt does not end with a user turn", dropped)
    if not rows:
        raise DataError("stage grpo: no usable prompt in the dataset (every prompt must end with a user turn)")
    return rows


def render_row(index: int, row: dict[str, Any], tokenizer: Any, template: Any, cutoff_len: int,
               max_completion_length: int, extra: dict[str, Any]) -> PromptRow:
    response = row["response"]
    solution = response[0]["content"] if len(response) == 1 else extra.get("solution")
    # encode_oneturn renders everything before the last message as the prompt. The answer itself goes in, as
    # in SFT: reasoning templates decide from it whether the prompt ends with an empty thought.
    answer = [{"role": Role.ASSISTANT.value, "content": solution or ""}]
    prompt_ids, _ = template.encode_oneturn(tokenizer, row["prompt"] + answer, row["system"], row["tools"])
    source_len, _ = infer_seqlen(len(prompt_ids), max_completion_length, cutoff_len)
    return PromptRow(index, prompt_ids[:source_len], solution, row["system"] or "", row["tools"] or "",
                     list(row["prompt"]), {k: v for k, v in extra.items() if k != "solution"})
