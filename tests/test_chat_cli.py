"""`tuneforge chat`: the interactive loop (history, clear, exit, Ctrl-D/Ctrl-C) with a fake engine, and the
real command end to end on a tiny model (--message, stdin, interactive)."""

import dataclasses
import io
import sys

import pytest
import torch
import yaml

from tuneforge import chat, cli
from tuneforge.config import all_params, make_config
from tuneforge.infer import ChatEngine


class FakeEngine:
    """Answers "answer <n>"; records the conversation each call saw and whether its stream was closed."""

    def __init__(self, interrupt_on=None):
        self.seen, self.closed, self.interrupt_on = [], [], interrupt_on

    def stream_chat(self, messages):
        self.seen.append([dict(m) for m in messages])
        number = len(self.seen)

        def pieces():
            try:
                yield "answer "
                if number == self.interrupt_on:
                    raise KeyboardInterrupt
                yield str(number)
            finally:
                self.closed.append(number)

        return pieces()


def scripted(*lines):
    """read_line for the loop: the given lines, then Ctrl-D."""
    queue = list(lines)

    def read_line(prompt):
        if not queue:
            raise EOFError
        line = queue.pop(0)
        if isinstance(line, BaseException):
            raise line
        return line

    return read_line


def test_history_is_kept_and_clear_resets_it():
    engine, out = FakeEngine(), io.StringIO()
    assert chat.interactive(engine, scripted("Hi", "And?", "clear", "New topic", "exit", "never read"), out) == 0
    first, second, third = engine.seen
    assert first == [{"role": "user", "content": "Hi"}]
    assert second == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "answer 1"},
                      {"role": "user", "content": "And?"}]
    assert third == [{"role": "user", "content": "New topic"}]
    assert out.getvalue() == (chat.WELCOME + "\nAssistant: answer 1\nAssistant: answer 2\nHistory cleared.\n"
                              "Assistant: answer 3\n")


@pytest.mark.parametrize("end", [EOFError(), KeyboardInterrupt()])
def test_ctrl_d_and_ctrl_c_at_the_prompt_quit_cleanly(end):
    engine, out = FakeEngine(), io.StringIO()
    assert chat.interactive(engine, scripted("Hi", end), out) == 0
    assert out.getvalue().endswith("Assistant: answer 1\n\n")


def test_blank_lines_are_ignored():
    engine = FakeEngine()
    chat.interactive(engine, scripted("   ", "", "Hi"), io.StringIO())
    assert len(engine.seen) == 1


def test_ctrl_c_during_an_answer_stops_it_and_forgets_the_question():
    engine, out = FakeEngine(interrupt_on=2), io.StringIO()
    assert chat.interactive(engine, scripted("Hi", "Long story?", "Short one"), out) == 0
    assert engine.closed == [1, 2, 3]
    assert engine.seen[2] == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "answer 1"},
                              {"role": "user", "content": "Short one"}]
    assert "Assistant: answer \n(answer stopped)\n" in out.getvalue()


# ---- the real command on a tiny model ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def generation_keys_implemented(monkeypatch):
    """The generate-group keys were declared `implemented=False` until chat existed; this command implements
    them. Marks them implemented for these tests (a no-op once the declarations say so)."""
    params = all_params()
    for name, param in list(params.items()):
        if param.group == "generate" and not param.implemented:
            monkeypatch.setitem(params, name, dataclasses.replace(param, implemented=True))


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, tiny_llama_dir):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("chat_cli")
    path = folder / "chat.yaml"
    path.write_text(yaml.safe_dump(dict(model_name_or_path=str(tiny_llama_dir), template="qwen",
                                        do_sample=False, max_new_tokens=10)))
    return path


@pytest.fixture(scope="module")
def expected(config_file):
    """What the engine answers "Hello" with under the file's settings (greedy, 10 tokens)."""
    engine = ChatEngine(make_config(yaml.safe_load(config_file.read_text())))
    return lambda **overrides: engine.chat([{"role": "user", "content": "Hello"}], **overrides)


def test_message_prints_only_the_answer(config_file, expected, capsys):
    assert cli.main(["chat", str(config_file), "--message", "Hello"]) == 0
    captured = capsys.readouterr()
    assert captured.out == expected() + "\n"
    assert "all params:" in captured.err  # loader output goes to stderr, not into the answer


def test_overrides_reach_generation(config_file, expected, capsys):
    assert cli.main(["chat", "--message", "Hello", str(config_file), "max_new_tokens=2"]) == 0
    assert capsys.readouterr().out == expected(max_new_tokens=2) + "\n"


def test_piped_stdin_is_one_message(config_file, expected, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hello\n"))
    assert cli.main(["chat", str(config_file)]) == 0
    assert capsys.readouterr().out == expected() + "\n"


def test_empty_stdin_is_a_clear_error(config_file, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    assert cli.main(["chat", str(config_file)]) == 2
    assert capsys.readouterr().err.startswith("error: chat: stdin is empty; pass the message with --message TEXT")


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_interactive_session_in_a_terminal(config_file, expected, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setattr("builtins.input", scripted("Hello", "clear", "Hello", "exit"))
    assert cli.main(["chat", str(config_file)]) == 0
    answer = expected()
    assert capsys.readouterr().out == (chat.WELCOME + f"\nAssistant: {answer}\nHistory cleared.\n"
                                       f"Assistant: {answer}\n")


def test_config_mistakes_are_reported_before_loading(config_file, capsys):
    assert cli.main(["chat", str(config_file), "temprature=0.3", "--message", "Hi"]) == 2
    assert "unknown key 'temprature' (given on the command line). Did you mean: temperature" in capsys.readouterr().err
    assert cli.main(["chat", "template=qwen", "--message", "Hi"]) == 2
    assert capsys.readouterr().err == "error: model_name_or_path is not set; `tuneforge chat` needs it.\n"
    # validate_config: an unknown template is named before the (here missing) model is looked for.
    assert cli.main(["chat", "model_name_or_path=/nonexistent", "template=qwenn", "--message", "Hi"]) == 2
    assert "unknown template 'qwenn'; closest: qwen" in capsys.readouterr().err
