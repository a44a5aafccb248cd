"""Token-for-token parity with LLaMA-Factory 0.9.5's get_dataset.

tests/fixtures/parity/expected.json.gz holds what LLaMA-Factory itself produced (tools/make_lf_parity_fixtures.py,
run in a venv with llamafactory==0.9.5) for each case: its YAML keys, and every column of every train/eval
row. The rows of its demo datasets and the tokenizer are committed next to it, so this test runs on a
fresh clone. Here our pipeline runs the same keys through make_config -> tokenizer/template ->
get_dataset and must give the same columns and values.
"""

import gzip
import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parents[1] / "fixtures" / "parity"
EXPECTED = json.loads(gzip.decompress((FIXTURES / "expected.json.gz").read_bytes()))
CASES = EXPECTED["cases"]


@pytest.fixture(autouse=True)
def pinned_date(monkeypatch):
    """The llama3 tool prompt holds today's date; the fixtures were made with this one."""
    from tuneforge.data.templates import tool_formats

    monkeypatch.setattr(tool_formats, "today", lambda: EXPECTED["fixed_date"])


def run_pipeline(keys: dict, tmp_path):
    from tuneforge.config.loader import make_config
    from tuneforge.data.pipeline import get_dataset, load_tokenizer_and_template

    cfg = make_config({
        "model_name_or_path": str(FIXTURES / "tokenizer"),
        "dataset_dir": str(FIXTURES / "data"),
        "finetuning_type": "lora",
        "do_train": True,
        "output_dir": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "cache"),
        **keys,
    })
    tokenizer, template = load_tokenizer_and_template(cfg)
    return get_dataset(cfg, tokenizer, template, cfg.method.stage)


def assert_same_columns(ours, expected: dict, where: str):
    got = ours.to_dict()
    for name, want in expected.items():
        if name == "token_type_ids" and name not in got:
            # transformers 4 lists token_type_ids for a bare PreTrainedTokenizerFast, 5 does not: all zeros.
            assert all(v == 0 for row in want for v in row), where
            continue
        assert name in got, f"{where}: column {name} missing; ours: {sorted(got)}"
        if want == "ones":
            ids_name = name.replace("attention_mask", "input_ids")
            assert got[name] == [[1] * len(row) for row in got[ids_name]], f"{where}: {name}"
        elif want is None:
            assert all(value is None for value in got[name]), f"{where}: {name} should be all None"
        else:
            assert len(got[name]) == len(want), f"{where}: {name} has {len(got[name])} rows, expected {len(want)}"
            for index, (mine, theirs) in enumerate(zip(got[name], want)):
                assert mine == theirs, f"{where}: {name} differs at row {index}"
    extra = set(got) - set(expected)
    assert not extra, f"{where}: columns LLaMA-Factory does not have: {sorted(extra)}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_llamafactory(case, tmp_path):
    expected = CASES[case]
    module = run_pipeline(expected["args"], tmp_path)
    if "train" in expected:
        assert_same_columns(module.train_dataset, expected["train"], f"{case} train")
    if "eval" in expected:
        assert_same_columns(module.eval_dataset, expected["eval"], f"{case} eval")
    else:
        assert module.eval_dataset is None


def test_fixtures_stay_small():
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < 2 * 2**20


def test_tokenized_path_round_trip_matches_llamafactory(tmp_path):
    """Saved with tokenized_path (LLaMA-Factory's DatasetDict layout), then loaded back: same rows."""
    from datasets import DatasetDict, load_from_disk

    expected = CASES["sft_alpaca_qwen_val_size"]
    path = tmp_path / "tokenized"
    run_pipeline({**expected["args"], "tokenized_path": str(path)}, tmp_path)
    saved = load_from_disk(str(path))
    assert isinstance(saved, DatasetDict) and sorted(saved) == ["train", "validation"]
    assert_same_columns(saved["train"], expected["train"], "saved train")
    assert_same_columns(saved["validation"], expected["eval"], "saved validation")
    module = run_pipeline({**expected["args"], "tokenized_path": str(path), "dataset": "missing"}, tmp_path)
    assert_same_columns(module.eval_dataset, expected["eval"], "reloaded validation")
