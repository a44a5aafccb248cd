"""OpenAI's presence penalty as a transformers logits processor.

transformers has `repetition_penalty` (a multiplicative penalty, CTRL style) but nothing with OpenAI's
meaning: subtract `penalty` once from the logit of every token that already occurs in the answer so far
(the prompt does not count). A negative value encourages repetition, as in OpenAI's API.
"""

from __future__ import annotations

import torch


class PresencePenalty:
    def __init__(self, penalty: float, prompt_length: int):
        self.penalty = penalty
        self.prompt_length = prompt_length  # the padded prompt width: every row's answer starts there

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        answer = input_ids[:, self.prompt_length:]
        if answer.shape[1] == 0:
            return scores
        present = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, answer, True)
        return scores - self.penalty * present.to(scores.dtype)
