"""bench/all.py (`make bench-all`): the results schema and the one table of ratio / goal / holds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def bench(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    for name in ("results", "all"):
        sys.modules.pop(name, None)
    import importlib

    results = importlib.import_module("results")
    monkeypatch.setattr(results, "RESULTS", tmp_path)
    runner = importlib.import_module("all")
    monkeypatch.setattr(runner, "RESULTS", tmp_path)
    return results, runner


def test_a_goal_holds_by_its_direction(bench):
    results, _ = bench
    assert results.figure("speed", 5.2, ">= 5")["holds"] is True
    assert results.figure("speed", 4.9, ">= 5")["holds"] is False
    assert results.figure("rss", 0.45, "<= 0.5")["holds"] is True
    assert results.figure("rss", 0.57, "<= 0.5") == {"name": "rss", "ratio": 0.57, "goal": "<= 0.5", "holds": False}
    with pytest.raises(ValueError, match="use '>= N' or '<= N'"):
        results.figure("x", 1.0, "> 1")


def test_the_table_lists_every_figure_with_the_machine(bench, tmp_path, capsys):
    results, runner = bench
    results.write_result("preprocess", [results.figure("rows/s vs LF", 2.345, ">= 5", "median of 3")])
    (tmp_path / "other.json").write_text(json.dumps({
        "benchmark": "dpo", "measured_at": "2026-12-03T17:00:00Z",
        "machine": {"cpu": "Test CPU", "cores": 2, "flags": ["avx512_bf16"], "load_1min": 9.5, "shared": True},
        "figures": [{"name": "tokens/s vs LF", "ratio": 1.5, "goal": ">= 1.5", "holds": True}]}))
    (tmp_path / "notes.json").write_text("[1, 2]")  # not a results file: ignored

    assert runner.main(["--table-only"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "machine: Test CPU, 2 cores, flags avx512_bf16, load 9.5, shared with other jobs" in out
    header = next(i for i, line in enumerate(out) if line.startswith("benchmark"))
    assert out[header].split() == ["benchmark", "figure", "ratio", "goal", "holds", "measured"]
    rows = [line.split("  ") for line in out[header + 1:]]
    cells = [[cell.strip() for cell in row if cell.strip()] for row in rows]
    assert cells[0][:5] == ["dpo", "tokens/s vs LF", "1.50", ">= 1.5", "yes"]
    assert cells[1][:5] == ["preprocess", "rows/s vs LF", "2.35", ">= 5", "NO"]


def test_a_failing_benchmark_is_reported_and_the_exit_code_says_so(bench, monkeypatch, capsys):
    _, runner = bench
    monkeypatch.setitem(runner.BENCHMARKS, "preprocess", ["bench/does_not_exist.py"])
    assert runner.main(["--only", "preprocess"]) == 1
    assert "preprocess: missing bench/does_not_exist.py" in capsys.readouterr().err
