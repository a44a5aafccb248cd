"""Thought blocks for reasoning templates (qwen3, deepseekr1, glm4_moe, ...), as LLaMA-Factory 0.9.5 does it.

A reasoning model writes "<think>\\n...\\n</think>\\n\\n" before its answer. When training:
  - enable_thinking=False: thoughts are removed from every assistant turn, and an empty thought block is
    put at the END OF THE PROMPT (not trained: the model is told "no thinking here");
  - enable_thinking=True (default): an assistant turn that has no thought gets the empty thought block at
    the START OF ITS RESPONSE (trained: the model learns to emit it);
  - multi-turn with discarding_history_cot (mask_history without preserve_thinking): thoughts of earlier
    turns are removed and only the last turn gets the empty-thought rule;
  - one-turn encoding (preference/KTO/inference prompts) removes earlier turns' thoughts unless
    preserve_thinking.
The empty thought block is its own element (tokenized separately), exactly like LLaMA-Factory's.
"""

from __future__ import annotations

import re


def remove_thought(template, content: str) -> str:
    opening, closing = template.thought_words
    pattern = re.compile(f"{re.escape(opening)}(.*?){re.escape(closing)}", re.DOTALL)
    return pattern.sub("", content).lstrip("\n")


def has_thought(template, content: str) -> bool:
    opening, closing = template.thought_words
    return opening.strip() in content or closing.strip() in content


def _without_thoughts(template, messages: list, indices) -> list:
    messages = list(messages)  # never modify the caller's rows
    for i in indices:
        messages[i] = {**messages[i], "content": remove_thought(template, messages[i]["content"])}
    return messages


def plan_multiturn(template, messages, system, tools, discarding_history_cot: bool) -> list[list]:
    if template.enable_thinking is False:
        messages = _without_thoughts(template, messages, range(1, len(messages), 2))
    if discarding_history_cot:  # keep only the last turn's thought
        messages = _without_thoughts(template, messages, range(1, len(messages) - 2, 2))

    plan = template._message_elements(messages, system, tools)
    turns = [len(messages) - 2] if discarding_history_cot else range(0, len(messages), 2)
    for i in turns:
        if not has_thought(template, messages[i + 1]["content"]):
            if not template.enable_thinking:
                plan[i] = plan[i] + [template.empty_thought]
            else:
                plan[i + 1] = [template.empty_thought] + plan[i + 1]
    return plan


def plan_oneturn(template, messages, system, tools) -> list[list]:
    """The plan's last entry is the response; every entry before it joins into the prompt."""
    if not template.preserve_thinking:
        messages = _without_thoughts(template, messages, range(1, len(messages) - 2, 2))
    if template.enable_thinking is False:
        messages = _without_thoughts(template, messages, [len(messages) - 1])

    plan = template._message_elements(messages, system, tools)
    if not has_thought(template, messages[-1]["content"]):
        if not template.enable_thinking:
            plan.insert(len(plan) - 1, [template.empty_thought])  # end of the prompt
        else:
            plan[-1] = [template.empty_thought] + plan[-1]
    return plan
