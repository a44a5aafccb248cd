"""`tuneforge chat`: talk to a model (+ adapter) in the terminal, or get one answer for a script.

    tuneforge chat cfg.yaml                      interactive: streamed answers, multi-turn history,
                                                 `clear` starts over, `exit` or Ctrl-D quits
    tuneforge chat cfg.yaml --message "Hi"       one answer on stdout, then exit
    echo "Hi" | tuneforge chat cfg.yaml          the same with the whole of stdin as the message

In the one-shot forms stdout carries only the answer, so scripts can capture it; everything else
(loading messages, warnings) goes to stderr.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from .errors import UserError

if TYPE_CHECKING:
    from .config import Config

WELCOME = ("Chatting with the model. `clear` starts a new conversation, `exit` or Ctrl-D quits; "
           "Ctrl-C stops an answer (at the prompt it quits).")
EXIT_WORD, CLEAR_WORD = "exit", "clear"


def run_chat(cfg: Config, message: str | None = None, stdin: TextIO | None = None,
             stdout: TextIO | None = None) -> int:
    """What `tuneforge chat` does with a config: one answer (--message or piped stdin) or a session."""
    from .validate import validate_config

    validate_config(cfg)  # a misspelled template is reported before anything loads
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
        return answer_once(engine, message, stdout)
    _enable_line_editing()
    return interactive(engine, input, stdout)


def answer_once(engine: Any, message: str, out: TextIO) -> int:
    stream_answer(engine, [{"role": "user", "content": message}], out)
    print(file=out, flush=True)
    return 0


def interactive(engine: Any, read_line: Callable[[str], str], out: TextIO) -> int:
    """The chat loop. `read_line(prompt)` reads one user line (`input` in a terminal)."""
    print(WELCOME, file=out)
    try:
        _converse(engine, read_line, out)
    except (EOFError, KeyboardInterrupt):  # Ctrl-D / Ctrl-C outside an answer: leave quietly
        print(file=out)
    return 0


def _converse(engine: Any, read_line: Callable[[str], str], out: TextIO) -> None:
    messages: list[dict] = []
    while True:
        line = read_line("\nUser: ")
        command = line.strip()
        if command == EXIT_WORD:
            return
        if command == CLEAR_WORD:
            messages = []
            print("History cleared.", file=out)
            continue
        if not command:
            continue
        messages.append({"role": "user", "content": line})
        print("Assistant: ", end="", file=out, flush=True)
        try:
            reply = stream_answer(engine, messages, out)
        except KeyboardInterrupt:
            # A cut-off answer is not a turn the model gave: forget the question too, keep the session.
            messages.pop()
            print("\n(answer stopped)", file=out)
            continue
        print(file=out)
        messages.append({"role": "assistant", "content": reply})


def stream_answer(engine: Any, messages: list[dict], out: TextIO) -> str:
    """Print the answer as it is generated; return it whole."""
    pieces = []
    stream = engine.stream_chat(messages)
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
