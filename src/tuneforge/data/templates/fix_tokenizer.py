"""Prepare a tokenizer for a template, the way LLaMA-Factory 0.9.5 does (same tokens, same ids):

  1. replace_eos templates make their first stop word the eos token (chatml's <|im_end|>, llama3's
     <|eot_id|>): generation then stops at the end of an assistant turn;
  2. a tokenizer without an eos token gets "<|endoftext|>";
  3. a tokenizer without a pad token pads with eos;
  4. the remaining stop words become special tokens (never split, one id each).
New vocabulary entries mean the model's embeddings must grow (`resize_vocab`), so we warn.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def _warn_added(count: int, what: str) -> None:
    if count > 0:
        logger.warning("added %s to the tokenizer's vocabulary: set resize_vocab: true so the model grows too", what)


def _set_eos(tokenizer, eos_token: str) -> None:
    if tokenizer.eos_token == eos_token:
        return
    had_eos = tokenizer.eos_token_id is not None
    added = tokenizer.add_special_tokens({"eos_token": eos_token})
    logger.info("%s eos token: %s", "replace" if had_eos else "add", eos_token)
    _warn_added(added, eos_token)


def _add_special_tokens(tokenizer, tokens: list[str]) -> int:
    """Add tokens as special tokens, keeping the tokenizer's other extra special tokens."""
    request = {"additional_special_tokens": tokens}
    for keep_others in ({"replace_extra_special_tokens": False}, {"replace_additional_special_tokens": False}, {}):
        try:  # the keyword was renamed in transformers 5
            return tokenizer.add_special_tokens(request, **keep_others)
        except TypeError:
            continue
    raise TypeError("tokenizer.add_special_tokens rejected the stop words")


def fix_tokenizer(template, tokenizer) -> None:
    stop_words = list(template.stop_words)
    if template.replace_eos:
        _set_eos(tokenizer, stop_words[0])
        stop_words = stop_words[1:]
    if tokenizer.eos_token_id is None:
        _set_eos(tokenizer, "<|endoftext|>")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
        logger.info("pad token: %s", tokenizer.pad_token)
    if stop_words:
        added = _add_special_tokens(tokenizer, stop_words)
        logger.info("stop words: %s", ", ".join(stop_words))
        _warn_added(added, ", ".join(stop_words))


def set_chat_template(template, tokenizer) -> None:
    """Give the tokenizer our template as Jinja when it has none (or the template replaces it), so a saved
    model chats with the format it was trained on."""
    if getattr(tokenizer, "chat_template", None) is None or template.replace_jinja_template:
        tokenizer.chat_template = template.to_jinja(tokenizer)
