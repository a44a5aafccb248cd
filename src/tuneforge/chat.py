"""`tuneforge chat`: talk to a model (+ adapter) in the terminal, or get one answer for a script.

    tuneforge chat cfg.yaml                      interactive: streamed answers, multi-turn history,
                                                 `clear` starts over, `exit` or Ctrl-D quits
    tuneforge chat cfg.yaml --message "Hi"       one answer on stdout, then exit
    echo "Hi" | tuneforge chat cfg.yaml          the same with the whole of stdin as the message
    tuneforge chat cfg.yaml --image cat.png --message "What is this?"
                                                 a vision-language model answers about the image
                                                 (--image / --video / --audio, each repeatable)

In the interactive form, `/image PATH` (or `/video PATH`, `/audio PATH`) attaches a file to the next message.
A message without <image> / <video> / <audio> placeholders gets one per attached file at its start, as
LLaMA-Factory's chat engine does; the files stay with the conversation until `clear`.

In the one-shot forms stdout carries only the answer, so scripts can capture it; everything else
(loading messages, warnings) goes to stderr.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from .data.checks import PLACEHOLDERS
from .data.media.base import MEDIA_KINDS, RowMedia
from .errors import UserError

if TYPE_CHECKING:
    from .config import Config

WELCOME = ("Chatting with the model. `clear` starts a new conversation, `exit` or Ctrl-D quits; "
           "Ctrl-C stops an answer (at the prompt it quits).")
EXIT_WORD, CLEAR_WORD = "exit", "clear"
ATTACH_COMMANDS = {"/image": "images", "/video": "videos", "/audio": "audios"}


def run_chat(cfg: Config, message: str | None = None, stdin: TextIO | None = None,
             stdout: TextIO | None = None, media: RowMedia | None = None) -> int:
    """What `tuneforge chat` does with a config: one answer (--message or piped stdin) or a session.
    `media`: files (--image / --video / --audio) for the first message."""
    from .validate import validate_config

    validate_config(cfg)  # a misspelled template is reported before anything loads
    media = media or RowMedia()
    for kind in MEDIA_KINDS:
        for path in media.items(kind):
            _check_file(kind, path)
    stdin = stdin if stdin is not None else sys.stdin
    stdout = stdout if stdout is not None else sys.stdout
    if message is None and not stdin.isatty():
        message = stdin.read().rstrip("\r\n")  # the newline `echo` adds is not part of the message
        if not message.strip():
            raise UserError("chat: stdin is empty; pass the message with --message TEXT, pipe it in "
                            "(echo 'Hi' | tuneforge chat CFG), or run in a terminal for an interactive chat")

    from .infer import create_engine

    # The model loader prints its parameter count; keep stdout for the answer alone.
    with contextlib.redirect_stdout(sys.stderr):
        engine = create_engine(cfg)
    if message is not None:
        return answer_once(engine, message, stdout, media)
    _enable_line_editing()
    return interactive(engine, input, stdout, media)


def answer_once(engine: Any, message: str, out: TextIO, media: RowMedia | None = None) -> int:
    media = media or RowMedia()
    stream_answer(engine, [{"role": "user", "content": with_placeholders(message, media)}], out, media)
    print(file=out, flush=True)
    return 0


def with_placeholders(text: str, media: RowMedia) -> str:
    """`text` with one placeholder per media file in front, unless it already places them itself."""
    if any(PLACEHOLDERS[kind] in text for kind in MEDIA_KINDS):
        return text
    return "".join(PLACEHOLDERS[kind] * len(media.items(kind)) for kind in MEDIA_KINDS) + text


def _check_file(kind: str, path: str) -> None:
    import os

    if not (os.path.isfile(path) or (kind == "videos" and os.path.isdir(path))):
        raise UserError(f"chat: no {kind[:-1]} file at {path!r}; give the path of an existing file")


def interactive(engine: Any, read_line: Callable[[str], str], out: TextIO, media: RowMedia | None = None) -> int:
    """The chat loop. `read_line(prompt)` reads one user line (`input` in a terminal). `media`: files for
    the first message."""
    print(WELCOME, file=out)
    try:
        _converse(engine, read_line, out, media or RowMedia())
    except (EOFError, KeyboardInterrupt):  # Ctrl-D / Ctrl-C outside an answer: leave quietly
        print(file=out)
    return 0


def _converse(engine: Any, read_line: Callable[[str], str], out: TextIO, pending: RowMedia) -> None:
    messages: list[dict] = []
    media = RowMedia()  # the files of the conversation's placeholders so far
    while True:
        line = read_line("\nUser: ")
        command = line.strip()
        if command == EXIT_WORD:
            return
        if command == CLEAR_WORD:
            messages, media, pending = [], RowMedia(), RowMedia()
            print("History cleared.", file=out)
            continue
        if not command:
            continue
        word, _, path = command.partition(" ")
        if word in ATTACH_COMMANDS:
            kind = ATTACH_COMMANDS[word]
            try:
                _check_file(kind, path.strip())
            except UserError as error:
                print(str(error), file=out)
                continue
            pending = _joined(pending, RowMedia.of(**{kind: [path.strip()]}))
            print(f"Attached {path.strip()} to the next message.", file=out)
            continue
        messages.append({"role": "user", "content": with_placeholders(line, pending)})
        print("Assistant: ", end="", file=out, flush=True)
        try:
            reply = stream_answer(engine, messages, out, _joined(media, pending))
        except KeyboardInterrupt:
            # A cut-off answer is not a turn the model gave: forget the question too, keep the session.
            messages.pop()
            print("\n(answer stopped)", file=out)
            continue
        print(file=out)
        media, pending = _joined(media, pending), RowMedia()
        messages.append({"role": "assistant", "content": reply})


def _joined(first: RowMedia, second: RowMedia) -> RowMedia:
    return RowMedia.of(*(first.items(kind) + second.items(kind) for kind in MEDIA_KINDS))


def stream_answer(engine: Any, messages: list[dict], out: TextIO, media: RowMedia | None = None) -> str:
    """Print the answer as it is generated; return it whole. `media`: the files of the placeholders."""
    pieces = []
    stream = engine.stream_chat(messages, media=media) if media else engine.stream_chat(messages)
    try:
        for piece in stream:
            out.write(piece)
            out.flush()
            pieces.append(piece)
    finally:
        # On an interrupt, closing the stream stops the generation thread instead of letting it finish.
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return "".join(pieces)


def _enable_line_editing() -> None:
    with contextlib.suppress(ImportError):  # arrow keys and history in input(); absent on some platforms
        import readline  # noqa: F401
