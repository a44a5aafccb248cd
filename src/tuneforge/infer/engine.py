"""ChatEngine: answer a conversation with a local model through transformers' `generate`.

    engine = ChatEngine(cfg)                       # model + adapters + template + generation arguments
    engine.chat([{"role": "user", "content": "Hi"}])                        -> "Hello!"
    for piece in engine.stream_chat(messages): print(piece, end="")         # text as it is generated
    engine.respond(messages, max_new_tokens=64)    -> Response(text, prompt_length, response_length, finish_reason)

The prompt is built by the run's chat template exactly as training builds it (`encode_oneturn` on the
conversation plus an empty assistant turn), and generation stops at the template's stop tokens, so a
fine-tuned model is asked in the format it learnt. The engine knows nothing of terminals or HTTP: the
chat command, the API and the web UI all drive it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import DataError
from .generation import generation_settings, resolve_generation

logger = logging.getLogger(__name__)

PROMPT_ROLES = ("user", "observation")  # roles that may open a turn (and must end the conversation)
ANSWER_ROLES = ("assistant", "function")


@dataclass
class Response:
    text: str
    prompt_length: int  # tokens in the prompt
    response_length: int  # tokens generated, the stop token included
    finish_reason: str  # "stop": a stop token ended the answer; "length": the token limit did


class ChatEngine:
    """A model ready to answer, with the config's generation arguments as defaults.

    `cfg` is a Config (or a dict of values). Tests and the demo may hand in an already loaded model,
    tokenizer and template (all three) to skip loading.
    """

    def __init__(self, cfg: Any, *, model: Any = None, tokenizer: Any = None, template: Any = None):
        self.cfg = _as_config(cfg)
        self.generation = generation_settings(self.cfg)
        resolve_generation(self.generation)  # bad generation arguments fail before the weights load
        if model is None or tokenizer is None or template is None:
            model, tokenizer, template = load_for_inference(self.cfg)
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.stop_token_ids = template.get_stop_token_ids(tokenizer)
        # One generation at a time: a model's forward pass is not safe to share between threads.
        self._lock = threading.Lock()

    # ---- public API --------------------------------------------------------------------------------

    def build_prompt(self, messages: list[dict], system: str | None = None, tools: str | None = None) -> list[int]:
        """The prompt token ids: the conversation in the template's format, up to the assistant's turn."""
        check_messages(messages)
        paired = [*messages, {"role": "assistant", "content": ""}]
        prompt_ids, _ = self.template.encode_oneturn(self.tokenizer, paired, system, tools)
        return list(prompt_ids)

    def respond(self, messages: list[dict], system: str | None = None, tools: str | None = None,
                **overrides: Any) -> Response:
        """The whole answer with its token counts. `overrides`: generation arguments for this request."""
        prompt_ids = self.build_prompt(messages, system, tools)
        kwargs, skip_special_tokens = self._generate_kwargs(overrides)
        return self._respond(prompt_ids, kwargs, skip_special_tokens)

    def chat(self, messages: list[dict], system: str | None = None, tools: str | None = None,
             **overrides: Any) -> str:
        """The answer's text."""
        return self.respond(messages, system, tools, **overrides).text

    def stream_chat(self, messages: list[dict], system: str | None = None, tools: str | None = None,
                    **overrides: Any) -> Iterator[str]:
        """The answer's text piece by piece; the pieces join to what `chat` returns.

        Bad messages or arguments raise here, before anything is generated. Generation starts when the
        iterator is first read; closing it early (a client that goes away, Ctrl-C) stops generation at the
        next token instead of finishing the answer.
        """
        prompt_ids = self.build_prompt(messages, system, tools)
        kwargs, skip_special_tokens = self._generate_kwargs(overrides)
        return self._stream(prompt_ids, kwargs, skip_special_tokens)

    # ---- internals ---------------------------------------------------------------------------------

    def _respond(self, prompt_ids: list[int], kwargs: dict[str, Any], skip_special_tokens: bool) -> Response:
        with self._lock:
            output = self._generate(prompt_ids, kwargs)
        answer_ids = output[0, len(prompt_ids):].tolist()
        stopped = bool(answer_ids) and answer_ids[-1] in self.stop_token_ids
        return Response(
            text=self.tokenizer.decode(answer_ids, skip_special_tokens=skip_special_tokens),
            prompt_length=len(prompt_ids),
            response_length=len(answer_ids),
            finish_reason="stop" if stopped else "length",
        )

    def _stream(self, prompt_ids: list[int], kwargs: dict[str, Any], skip_special_tokens: bool) -> Iterator[str]:
        """Generation in a thread feeding a TextIteratorStreamer; this generator reads it."""
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        if kwargs["num_beams"] > 1:
            # Beam search keeps several candidate answers alive until the end, so there is nothing to
            # stream before it finishes (transformers refuses a streamer with beams).
            yield self._respond(prompt_ids, kwargs, skip_special_tokens).text
            return

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=skip_special_tokens)
        cancelled = threading.Event()
        failures: list[BaseException] = []

        def work() -> None:
            try:
                with self._lock:
                    self._generate(prompt_ids, kwargs, streamer=streamer,
                                   stopping_criteria=StoppingCriteriaList([_StopWhenSet(cancelled)]))
            except BaseException as error:  # re-raised in the reader's thread below
                failures.append(error)
                streamer.end()  # unblocks the reader

        thread = threading.Thread(target=work, name="tuneforge-generate", daemon=True)
        thread.start()
        try:
            for piece in streamer:
                if piece:
                    yield piece
        finally:
            cancelled.set()
            thread.join()
        if failures:
            raise failures[0]

    def _generate_kwargs(self, overrides: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        kwargs, skip_special_tokens = resolve_generation(self.generation, overrides)
        pad_token_id = self.tokenizer.pad_token_id
        kwargs.update(eos_token_id=self.stop_token_ids,
                      pad_token_id=pad_token_id if pad_token_id is not None else self.stop_token_ids[0])
        return kwargs, skip_special_tokens

    @torch.inference_mode()
    def _generate(self, prompt_ids: list[int], kwargs: dict[str, Any], **extra: Any) -> torch.Tensor:
        device = next(self.model.parameters()).device
        input_ids = torch.tensor([prompt_ids], device=device)
        return self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                   **kwargs, **extra)


class _StopWhenSet:
    """A stopping criterion that ends generation once the event is set (the reader went away)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def check_messages(messages: Any) -> None:
    """A conversation the template can encode: user (or observation) and assistant (or function) turns
    alternating, starting and ending with a user turn. DataError names the first message that is wrong."""
    if not isinstance(messages, list) or not messages:
        raise DataError("messages: expected a non-empty list of {\"role\": ..., \"content\": ...} messages "
                        "ending with a user message")
    for index, message in enumerate(messages):
        expected = PROMPT_ROLES if index % 2 == 0 else ANSWER_ROLES
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise DataError(f"messages[{index}]: expected {{\"role\": ..., \"content\": \"text\"}}, got {message!r}")
        if message.get("role") not in expected:
            raise DataError(f"messages[{index}]: role {message.get('role')!r} is out of place; turns alternate "
                            f"{' or '.join(PROMPT_ROLES)} -> {' or '.join(ANSWER_ROLES)}, starting with a user "
                            "message (put a system prompt in `system`, not in messages)")
    if len(messages) % 2 == 0:
        raise DataError(f"messages: the conversation ends with an {messages[-1]['role']} message; "
                        "add the user message the model should answer")


def load_for_inference(cfg: Any) -> tuple[Any, Any, Any]:
    """(model, tokenizer, template) for answering: adapters merged, eval mode, on the GPU when there is one."""
    from ..data.templates import get_template
    from ..model.loader import load_model, training_device, with_local_model
    from ..data.tokenizer import load_tokenizer

    cfg = with_local_model(cfg)  # a ModelScope id is fetched once; tokenizer and model load from disk
    tokenizer = load_tokenizer(cfg)
    template = get_template(getattr(cfg, "template", None), tokenizer, tool_format=getattr(cfg, "tool_format", None),
                            default_system=getattr(cfg, "default_system", None),
                            enable_thinking=getattr(cfg, "enable_thinking", True))
    model = load_model(cfg, tokenizer, is_trainable=False)
    device = training_device(cfg)
    if device != "cpu":
        model.to(device)
    logger.info("Chat model ready on %s", device)
    return model, tokenizer, template


def _as_config(cfg: Any) -> Any:
    if isinstance(cfg, dict):
        from ..config import make_config

        return make_config(cfg)
    return cfg
