"""ChatEngine: answer a conversation with a local model through transformers' `generate`.

    engine = ChatEngine(cfg)                       # model + adapters + template + generation arguments
    engine.chat([{"role": "user", "content": "Hi"}])                        -> "Hello!"
    for piece in engine.stream_chat(messages): print(piece, end="")         # text as it is generated
    engine.respond(messages, max_new_tokens=64)    -> Response(text, prompt_length, response_length, finish_reason)
    engine.generate_batch([ids_a, ids_b], stop=["\n\n"])   -> [Response, Response]  (one left-padded generate)

The prompt is built by the run's chat template exactly as training builds it (`encode_oneturn` on the
conversation plus an empty assistant turn), and generation stops at the template's stop tokens, so a
fine-tuned model is asked in the format it learnt. The engine knows nothing of terminals or HTTP: the
chat command, the API and the web UI all drive it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..data.media import MediaPlugin, RowMedia, attach_media_plugin, expand_media, media_plugin_of
from ..errors import DataError
from .decoding import DecodingCriterion, RowDecoder
from ..config.generation import generation_settings, resolve_generation
from .penalties import PresencePenalty

if TYPE_CHECKING:
    from ..config import Config

logger = logging.getLogger(__name__)

PROMPT_ROLES = ("user", "observation")  # roles that may open a turn (and must end the conversation)
ANSWER_ROLES = ("assistant", "function")
INFER_DTYPES = {"auto": None, "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass
class Response:
    text: str
    prompt_length: int  # tokens in the prompt
    response_length: int  # tokens generated, the stop token included
    finish_reason: str  # "stop": a stop token or stop string ended the answer; "length": the token limit did
    answer_ids: list[int] = field(default_factory=list)  # the generated ids, without the final stop token


class ChatEngine:
    """A model ready to answer, with the config's generation arguments as defaults.

    `cfg` is a resolved Config (make_config / load_config). Tests and the demo may hand in an already
    loaded model, tokenizer and template (all three) to skip loading.
    """

    def __init__(self, cfg: Config, *, model: Any = None, tokenizer: Any = None, template: Any = None):
        self.cfg = cfg
        self.generation = generation_settings(cfg.generate)
        resolve_generation(self.generation)  # bad generation arguments fail before the weights load
        if model is None or tokenizer is None or template is None:
            model, tokenizer, template = load_for_inference(self.cfg)
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.stop_token_ids = template.get_stop_token_ids(tokenizer)
        self.context_length = model_context_length(model)
        # One generation at a time: a model's forward pass is not safe to share between threads.
        self._lock = threading.Lock()

    # ---- public API --------------------------------------------------------------------------------

    def build_prompt(self, messages: list[dict], system: str | None = None, tools: str | None = None,
                     images: list | None = None, media: RowMedia | None = None) -> list[int]:
        """The prompt token ids: the conversation in the template's format, up to the assistant's turn.

        `images` (vision-language models): one image (path, bytes stream or PIL image) per `<image>`
        placeholder in the messages; `media`: images, videos and audios (one per <image> / <video> /
        <audio>), for any media family. The media plugin turns the placeholders into the model's media tokens
        and makes its id-level change to the prompt (LLaMA-Factory's process_messages / process_token_ids)."""
        check_messages(messages)
        media = _row_media(images, media)
        if media:
            plugin = self._media_plugin()
            messages = expand_media(self.template, messages, media.images, media.videos, media.audios)
        paired = [*messages, {"role": "assistant", "content": ""}]
        prompt_ids, _ = self.template.encode_oneturn(self.tokenizer, paired, system, tools)
        if media and plugin is not None:
            prompt_ids, _ = plugin.expand_token_ids(list(prompt_ids), None, media)
        return list(prompt_ids)

    def image_problem(self) -> str | None:
        """Why this engine cannot take images (None: it can), found without decoding any image."""
        return self.media_problem("images")

    def media_problem(self, kind: str) -> str | None:
        """Why this engine cannot take media of `kind` ("images", "videos", "audios"; None: it can), found
        without decoding any file."""
        plugin = self._media_plugin()
        if plugin is None:
            return getattr(self.template, "media_problem", None) or f"this model takes no {kind}"
        if kind not in plugin.kinds:
            return f"this model takes only {', '.join(plugin.kinds)}"
        return None

    def respond(self, messages: list[dict], system: str | None = None, tools: str | None = None,
                **overrides: Any) -> Response:
        """The whole answer with its token counts. `overrides`: generation arguments for this request."""
        prompt_ids = self.build_prompt(messages, system, tools)
        return self.generate_batch([prompt_ids], **overrides)[0]

    def chat(self, messages: list[dict], system: str | None = None, tools: str | None = None,
             **overrides: Any) -> str:
        """The answer's text."""
        return self.respond(messages, system, tools, **overrides).text

    def stream_chat(self, messages: list[dict], system: str | None = None, tools: str | None = None,
                    images: list | None = None, media: RowMedia | None = None, **overrides: Any) -> Iterator[str]:
        """The answer's text piece by piece; the pieces join to what `chat` returns.
        `images` / `media`: the media of the messages' placeholders, as in build_prompt.

        Bad messages or arguments raise here, before anything is generated. Generation starts when the
        iterator is first read; closing it early (a client that goes away, Ctrl-C) stops generation at the
        next token instead of finishing the answer.
        """
        row = _row_media(images, media)
        prompt_ids = self.build_prompt(messages, system, tools, media=row)
        self._generate_kwargs(overrides)  # bad arguments fail now, not in the generation thread
        return self._stream(prompt_ids, overrides, row)

    def generate_batch(self, prompts: list[list[int]], *, images: list[list | None] | None = None,
                       media: list[RowMedia | None] | None = None, stop: Sequence[str] = (), presence_penalty: float = 0.0,
                       on_piece: Callable[[int, str], None] | None = None,
                       cancelled: Callable[[int], bool] | None = None, **overrides: Any) -> list[Response]:
        """Answer several prompts (token ids, e.g. from build_prompt) in one `generate` call; one Response each.

        The prompts are left-padded into one batch, so a greedy answer is the one the prompt gets alone.
        `overrides`: generation arguments shared by the batch. `stop`: strings that end an answer (cut off
        before them, as OpenAI does). `presence_penalty`: OpenAI's additive penalty on tokens already in the
        answer. `images` / `media`: per prompt, the images (or all media) its media tokens stand for
        (build_prompt(images=... / media=...)).
        `on_piece(row, text)` receives each row's text as it becomes final (from the generating thread);
        `cancelled(row)` true ends that row early. Generate one prompt n times for n answers.
        A total `max_length` (instead of max_new_tokens) counts the padded width, i.e. the longest prompt.
        """
        if not prompts:
            return []
        kwargs, skip_special_tokens = self._generate_kwargs(overrides)
        decoders = [RowDecoder(self.tokenizer, self.stop_token_ids, stop, skip_special_tokens) for _ in prompts]
        rows = media if media is not None else [RowMedia.of(row) for row in images] if images is not None else None
        with self._lock:
            output, width = self._generate_rows(prompts, rows, kwargs, decoders, presence_penalty, on_piece,
                                                cancelled)
        if kwargs["num_beams"] > 1:
            # Beam search keeps several candidates alive until the end, so rows are decoded once it has
            # finished, and a stream gets each answer in one piece.
            for row, decoder in enumerate(decoders):
                for token_id in output[row, width:].tolist():
                    decoder.push(token_id)
                decoder.finish()
                if on_piece is not None and decoder.text:
                    on_piece(row, decoder.text)
        return [Response(text=decoder.text, prompt_length=len(prompt), response_length=len(decoder.token_ids),
                         finish_reason="stop" if decoder.stopped else "length", answer_ids=decoder.answer_ids)
                for decoder, prompt in zip(decoders, prompts)]

    # ---- internals ---------------------------------------------------------------------------------

    def _stream(self, prompt_ids: list[int], overrides: dict[str, Any], media: RowMedia | None = None
                ) -> Iterator[str]:
        """Generation in a thread that puts the text pieces into a queue; this generator reads it."""
        pieces: queue.Queue = queue.Queue()
        cancelled = threading.Event()
        failures: list[BaseException] = []

        def work() -> None:
            try:
                self.generate_batch([prompt_ids], media=[media] if media else None,
                                    on_piece=lambda _row, piece: pieces.put(piece),
                                    cancelled=lambda _row: cancelled.is_set(), **overrides)
            except BaseException as error:  # re-raised in the reader's thread below
                failures.append(error)
            finally:
                pieces.put(None)  # unblocks the reader

        thread = threading.Thread(target=work, name="tuneforge-generate", daemon=True)
        thread.start()
        try:
            while (piece := pieces.get()) is not None:
                yield piece
        finally:
            cancelled.set()
            thread.join()
        if failures:
            raise failures[0]

    def _generate_kwargs(self, overrides: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        kwargs, skip_special_tokens = resolve_generation(self.generation, overrides)
        kwargs.update(eos_token_id=self.stop_token_ids, pad_token_id=self._pad_id())
        return kwargs, skip_special_tokens

    def _pad_id(self) -> int:
        pad_token_id = self.tokenizer.pad_token_id
        return pad_token_id if pad_token_id is not None else self.stop_token_ids[0]

    def _generate_rows(self, prompts, media, kwargs, decoders, presence_penalty, on_piece, cancelled):
        """(output ids, padded prompt width) of one generate call over the left-padded prompts."""
        from transformers import LogitsProcessorList, StoppingCriteriaList

        width = max(len(prompt) for prompt in prompts)
        pad = self._pad_id()
        input_ids = torch.tensor([[pad] * (width - len(prompt)) + list(prompt) for prompt in prompts])
        attention_mask = torch.tensor([[0] * (width - len(prompt)) + [1] * len(prompt) for prompt in prompts])
        extra: dict[str, Any] = {}
        if any(media or ()):
            extra.update(self._media_inputs(media, input_ids))
        if presence_penalty:
            extra["logits_processor"] = LogitsProcessorList([PresencePenalty(presence_penalty, width)])
        criterion = None
        if kwargs["num_beams"] == 1:
            criterion = DecodingCriterion(decoders, on_piece, cancelled)
            extra["stopping_criteria"] = StoppingCriteriaList([criterion])
        output = self._generate(input_ids, attention_mask, kwargs, **extra)
        if criterion is not None:
            criterion.finish()
        return output, width

    def _media_plugin(self) -> MediaPlugin | None:
        """The template's media plugin for this model, built on first use (None: the model takes no media)."""
        if not hasattr(self.template, "media_plugin"):
            attach_media_plugin(self.template, self.cfg, self.tokenizer)
        return media_plugin_of(self.template)

    def _media_inputs(self, media: list[RowMedia | None], input_ids: torch.Tensor) -> dict[str, Any]:
        plugin = media_plugin_of(self.template)
        assert plugin is not None  # build_prompt expanded these media with it
        return plugin.batch_inputs([row or RowMedia() for row in media], input_ids)

    @torch.inference_mode()
    def _generate(self, input_ids: Any, attention_mask: Any = None, kwargs: dict[str, Any] | None = None,
                  **extra: Any) -> torch.Tensor:
        """model.generate on the model's device. `input_ids` may be one prompt's list of ids."""
        if kwargs is None:  # _generate(prompt_ids, kwargs): one unpadded prompt
            input_ids, kwargs = [input_ids], attention_mask
            input_ids = torch.tensor(input_ids)
            attention_mask = torch.ones_like(input_ids)
        device = next(self.model.parameters()).device
        extra = {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in extra.items()}
        return self.model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                   **kwargs, **extra)


def model_context_length(model: Any) -> int | None:
    """The most positions the model attends to (max_position_embeddings, of the text model for a
    vision-language one); None when its config does not say."""
    config = getattr(model, "config", None)
    for candidate in (config, getattr(config, "text_config", None)):
        length = getattr(candidate, "max_position_embeddings", None)
        if isinstance(length, int) and length > 0:
            return length
    return None


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


def load_for_inference(cfg: Config) -> tuple[Any, Any, Any]:
    """(model, tokenizer, template) for answering: adapters merged, eval mode, on the GPU when there is one."""
    from ..data.media import attach_media_plugin
    from ..data.templates import template_for
    from ..data.tokenizer import load_tokenizer
    from ..model.loader import load_model, training_device, with_local_model

    cfg = with_local_model(cfg)  # a ModelScope id is fetched once; tokenizer and model load from disk
    tokenizer = load_tokenizer(cfg)
    template = template_for(tokenizer, cfg.data)
    model = load_model(cfg, tokenizer, is_trainable=False)
    dtype = INFER_DTYPES[cfg.infer.infer_dtype]
    if dtype is not None:
        model.to(dtype)
    device = training_device(cfg)
    if device != "cpu":
        model.to(device)
    if getattr(template, "media", None):  # a vision-language template: images in requests need its plugin
        attach_media_plugin(template, cfg, tokenizer)
    logger.info("Chat model ready on %s", device)
    return model, tokenizer, template


def _row_media(images: list | None, media: RowMedia | None) -> RowMedia:
    """One prompt's media from the `images` shorthand or a RowMedia (not both)."""
    if images and media:
        raise ValueError("give a prompt's images either as images=... or inside media=..., not both")
    return media if media is not None else RowMedia.of(images)
