"""What the vLLM and SGLang engines share: ChatEngine's prompt building (our template, our tokenizer) with
generation handed to an external engine, which receives token ids, never text, so the prompt is exactly
the one the HF backend would feed.

Subclasses implement `_run(prompts, images, sampling, stop) -> [(token_ids, text, stopped)]`. These
engines cannot stream token by token through their offline APIs: a stream gets each answer in one piece.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ...config.generation import generation_settings, resolve_generation
from ...errors import ConfigError
from ..engine import ChatEngine, Response

if TYPE_CHECKING:
    from ...config import Config


class ExternalEngine(ChatEngine):
    backend = ""

    def __init__(self, cfg: Config):
        from ...data.templates import template_for
        from ...data.tokenizer import load_tokenizer
        from ...model.loader import with_local_model

        self.cfg = with_local_model(cfg)
        self.generation = generation_settings(self.cfg.generate)
        resolve_generation(self.generation)
        self.adapters = list(self.cfg.model.adapter_name_or_path or [])
        if len(self.adapters) > 1:
            raise ConfigError(f"adapter_name_or_path: infer_backend {self.backend} serves one LoRA adapter, got "
                              f"{len(self.adapters)}; merge them first (`tuneforge export`) or use huggingface")
        self.tokenizer = load_tokenizer(self.cfg)
        self.template = template_for(self.tokenizer, self.cfg.data)
        self.stop_token_ids = self.template.get_stop_token_ids(self.tokenizer)
        self.model = None
        self.context_length: int | None = None  # the engine's max model length, set by _start
        self._lock = threading.Lock()
        self._start()

    def image_problem(self) -> str | None:
        return (f"infer_backend {self.backend} does not take images in tuneforge yet; use infer_backend: "
                "huggingface for vision-language models")

    def _start(self) -> None:
        raise NotImplementedError

    def _run(self, prompts: list[list[int]], images: list | None, sampling: dict[str, Any],
             stop: Sequence[str]) -> list[tuple[list[int], str, bool]]:
        raise NotImplementedError

    def generate_batch(self, prompts: list[list[int]], *, images: list[list | None] | None = None,
                       stop: Sequence[str] = (), presence_penalty: float = 0.0,
                       on_piece: Callable[[int, str], None] | None = None,
                       cancelled: Callable[[int], bool] | None = None, **overrides: Any) -> list[Response]:
        if not prompts:
            return []
        if any(images or ()):
            # vLLM and SGLang expand image tokens themselves from a different prompt layout; not wired yet.
            raise ConfigError(f"images: infer_backend {self.backend} does not take images in tuneforge yet; "
                              "use infer_backend: huggingface for vision-language models")
        kwargs, skip_special_tokens = resolve_generation(self.generation, overrides)
        if kwargs["num_beams"] > 1:
            raise ConfigError(f"num_beams: beam search is not served by infer_backend {self.backend}; "
                              "set num_beams: 1 or use infer_backend: huggingface")
        responses = []
        for prompt in prompts:
            if "max_new_tokens" not in kwargs and kwargs["max_length"] <= len(prompt):
                raise ConfigError(f"max_length: {kwargs['max_length']} leaves no room to answer a prompt of "
                                  f"{len(prompt)} tokens; raise it or set max_new_tokens")
        sampling = dict(
            temperature=kwargs.get("temperature", 0.0) if kwargs["do_sample"] else 0.0,
            top_p=kwargs.get("top_p", 1.0), top_k=kwargs.get("top_k", 0),
            repetition_penalty=kwargs["repetition_penalty"], presence_penalty=presence_penalty,
            skip_special_tokens=skip_special_tokens, stop_token_ids=list(self.stop_token_ids),
            max_new_tokens=kwargs.get("max_new_tokens"), max_length=kwargs.get("max_length"))
        with self._lock:
            results = self._run(prompts, images, sampling, list(stop))
        for row, (prompt, (token_ids, text, stopped)) in enumerate(zip(prompts, results)):
            if on_piece is not None and text:
                on_piece(row, text)
            answer_ids = token_ids[:-1] if token_ids and token_ids[-1] in self.stop_token_ids else token_ids
            responses.append(Response(text=text, prompt_length=len(prompt), response_length=len(token_ids),
                                      finish_reason="stop" if stopped else "length", answer_ids=answer_ids))
        return responses


def max_new_tokens(sampling: dict[str, Any], prompt: list[int]) -> int:
    return sampling["max_new_tokens"] or max(1, sampling["max_length"] - len(prompt))

