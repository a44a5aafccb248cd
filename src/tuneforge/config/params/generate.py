"""Decoding parameters used by chat, the API, the web UI and predict-with-generate."""

from typing import Any

from ..schema import declare

G = "generate"
LATER: dict[str, Any] = {"implemented": False}

declare("do_sample", "bool", True, "Sample the next token (false: greedy decoding).", G)
declare("temperature", "float", 0.95, "Sampling temperature.", G)
declare("top_p", "float", 0.7, "Nucleus sampling: keep the smallest token set with this total probability.",
        G)
declare("top_k", "int", 50, "Sample only among the k most likely tokens.", G)
declare("num_beams", "int", 1, "Beam-search width (1: no beam search).", G)
declare("max_length", "int", 1024, "Longest total sequence; `max_new_tokens` takes precedence when > 0.", G)
declare("max_new_tokens", "int", 1024, "Most tokens generated per answer.", G)
declare("repetition_penalty", "float", 1.0, "Penalty for repeated tokens (1.0: none).", G)
declare("length_penalty", "float", 1.0, "Length penalty exponent for beam search.", G)
declare("skip_special_tokens", "bool", True, "Drop special tokens from decoded text.", G)
