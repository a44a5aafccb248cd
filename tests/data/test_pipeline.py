"""The data pipeline end to end on tiny data: cache, tokenized_path, splits, streaming, workers, data check."""

import json
import logging

import pytest

from tuneforge.errors import ConfigError, DataError

ALPACA = [{"instruction": f"Say {word} {i}.", "input": "" if i % 2 else "politely", "output": f"{word} {i}!"}
          for i, word in enumerate(["hello", "world", "tip", "sleep", "eat", "run", "code", "read"] * 3)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    (folder / "alpaca.json").write_text(json.dumps(ALPACA))
    (folder / "text.jsonl").write_text("".join(json.dumps({"text": row["output"] * 3}) + "\n" for row in ALPACA))
    (folder / "dataset_info.json").write_text(json.dumps({
        "alpaca": {"file_name": "alpaca.json"},
        "text": {"file_name": "text.jsonl", "columns": {"prompt": "text"}},
    }))
    return folder


@pytest.fixture
def make_cfg(data_dir, tiny_tokenizer_dir, tmp_path):
    from tuneforge.config.loader import make_config

    def make(**keys):
        values = {"model_name_or_path": str(tiny_tokenizer_dir), "dataset_dir": str(data_dir),
                  "dataset": "alpaca", "template": "qwen", "stage": "sft", "do_train": True,
                  "finetuning_type": "lora", "cutoff_len": 64, "output_dir": str(tmp_path / "out"),
                  "cache_dir": str(tmp_path / "cache")}
        values.update(keys)
        return make_config(values)
    return make


def build(cfg, stage=None):
    from tuneforge.data.pipeline import get_dataset, load_tokenizer_and_template

    tokenizer, template = load_tokenizer_and_template(cfg)
    return get_dataset(cfg, tokenizer, template, stage or cfg.method.stage)


def rows(dataset):
    return dataset.to_dict()


def test_sft_columns_and_masking(make_cfg):
    module = build(make_cfg())
    train = module.train_dataset
    assert train.column_names == ["input_ids", "attention_mask", "labels", "images", "videos", "audios"]
    assert len(train) == len(ALPACA) and module.eval_dataset is None
    first = train[0]
    trained = [i for i, label in enumerate(first["labels"]) if label != -100]
    assert trained and first["labels"][trained[0]:] == first["input_ids"][trained[0]:]
    assert first["images"] is None


def test_second_run_loads_from_cache(make_cfg, caplog):
    cfg = make_cfg()
    first = rows(build(cfg).train_dataset)
    with caplog.at_level(logging.INFO, logger="tuneforge.data.pipeline"):
        second = build(cfg).train_dataset
    assert "loaded tokenized dataset from cache" in caplog.text
    assert rows(second) == first
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tuneforge.data.pipeline"):
        build(make_cfg(overwrite_cache=True))
    assert "loaded tokenized dataset from cache" not in caplog.text


def test_cache_key_follows_data_parameters(make_cfg, caplog):
    build(make_cfg())
    with caplog.at_level(logging.INFO, logger="tuneforge.data.pipeline"):
        short = build(make_cfg(cutoff_len=16)).train_dataset
    assert "loaded tokenized dataset from cache" not in caplog.text
    assert max(len(ids) for ids in short["input_ids"]) <= 16


def test_val_size_split_matches_train_test_split(make_cfg):
    module = build(make_cfg(val_size=0.25))
    assert len(module.train_dataset) == 18 and len(module.eval_dataset) == 6


@pytest.mark.parametrize("val_size, asked", [(24, "24 validation rows"), (30, "30 validation rows"),
                                             (1.0, "a fraction of 1, 24 validation rows")])
def test_val_size_that_leaves_no_training_rows(make_cfg, val_size, asked):
    with pytest.raises(DataError) as caught:
        build(make_cfg(val_size=val_size))
    assert str(caught.value) == (f"val_size: {val_size:g} asks for {asked}, but the training data holds 24 rows, "
                                 "leaving none to train on. Set val_size to a fraction below 1 (e.g. 0.1) or to a "
                                 "row count below 24")


def test_workers_give_the_same_rows(make_cfg):
    one = rows(build(make_cfg(overwrite_cache=True)).train_dataset)
    two = rows(build(make_cfg(preprocessing_num_workers=2, overwrite_cache=True)).train_dataset)
    assert one == two


def test_streaming_gives_an_iterable_of_the_same_rows(make_cfg):
    from datasets import IterableDataset

    eager = rows(build(make_cfg()).train_dataset)
    streamed = build(make_cfg(streaming=True, max_steps=10)).train_dataset
    assert isinstance(streamed, IterableDataset)
    streamed_rows = list(streamed)
    assert sorted(r["input_ids"] for r in streamed_rows) == sorted(eager["input_ids"])


def test_tokenized_path_saves_then_loads(make_cfg, tmp_path, capsys):
    from tuneforge.data.pipeline import preprocess_only

    path = tmp_path / "tokenized"
    assert preprocess_only(make_cfg(tokenized_path=str(path))) == 0
    out = capsys.readouterr().out
    assert f"tokenized dataset saved to {path}" in out and f"tokenized_path: {path}" in out
    assert (path / "dataset_dict.json").is_file()
    # Present: loaded as is, even with a dataset that no longer exists.
    module = build(make_cfg(tokenized_path=str(path), dataset="gone"))
    assert len(module.train_dataset) == len(ALPACA)
    assert preprocess_only(make_cfg(tokenized_path=str(path))) == 0
    assert "already holds a tokenized dataset (24 training rows)" in capsys.readouterr().out


def test_tokenized_path_with_streaming_is_refused(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="set streaming: false"):
        build(make_cfg(tokenized_path=str(tmp_path / "t"), streaming=True, max_steps=10))


def test_pt_blocks_and_too_little_text(make_cfg):
    module = build(make_cfg(stage="pt", dataset="text", cutoff_len=8))
    assert {len(ids) for ids in module.train_dataset["input_ids"]} == {8}
    with pytest.raises(DataError, match="fewer than cutoff_len"):
        build(make_cfg(stage="pt", dataset="text", cutoff_len=100000))


def test_neat_packing_rows_have_the_users_cutoff_len(make_cfg):
    train = build(make_cfg(neat_packing=True, cutoff_len=200)).train_dataset
    assert {len(ids) for ids in train["input_ids"]} == {200} and len(train) < len(ALPACA)
    assert "packing_params" in train.column_names and max(max(m) for m in train["attention_mask"]) > 1


def test_run_data_check_prints_length_stats(make_cfg, capsys):
    from tuneforge.data.pipeline import run_data_check

    assert run_data_check(make_cfg(cutoff_len=16)) == 0
    out = capsys.readouterr().out
    assert "train: 24 rows" in out and "p95" in out and "at cutoff_len (truncated)" in out
    assert "of tokens trained" in out


def test_render_examples_marks_trained_spans(make_cfg):
    from tuneforge.data.pipeline import render_examples

    text = render_examples(make_cfg(cutoff_len=256), n=2, color=False)
    assert text.count("--- example") == 2
    assert "[[hello 0!<|im_end|>" in text and "<|im_start|>user\nSay hello 0.\npolitely" in text
    assert "\033[32m" in render_examples(make_cfg(), n=1, color=True)


def test_load_tokenizer_errors(make_cfg, tmp_path):
    from tuneforge.data.tokenizer import load_tokenizer

    with pytest.raises(ConfigError, match="'org/not-here' is not a local folder and the hub is offline"):
        load_tokenizer(make_cfg(model_name_or_path="org/not-here"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_tokenizer(make_cfg(model_name_or_path=str(tmp_path / "missing")))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="could not load a tokenizer from the folder"):
        load_tokenizer(make_cfg(model_name_or_path=str(empty)))


def test_load_tokenizer_raises_model_max_length(make_cfg):
    from tuneforge.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(make_cfg(cutoff_len=2_000_000))
    assert tokenizer.model_max_length == 2_000_000 and tokenizer.padding_side == "right"


@pytest.mark.parametrize("keys, expected", [
    ({"stage": "sft"}, 64),
    ({"stage": "sft", "packing": True}, 63),
    ({"stage": "sft", "neat_packing": True}, 63),
    ({"stage": "pt"}, 64),                     # packing is only pt's default: LLaMA-Factory keeps cutoff_len
    ({"stage": "pt", "packing": True}, 63),    # asked for explicitly: one less, as in LLaMA-Factory
])
def test_effective_cutoff_len_follows_llamafactory(make_cfg, keys, expected):
    from tuneforge.data.tokenization import effective_cutoff_len, processing_options

    cfg = make_cfg(**keys)
    assert effective_cutoff_len(cfg) == expected
    assert processing_options(cfg).packing == (keys.get("stage") == "pt" or len(keys) > 1)


def test_tokenizers_parallelism_left_off_by_datasets_is_restored(monkeypatch):
    import os

    from tuneforge.data import tokenization

    monkeypatch.setattr(tokenization, "_USER_TOKENIZERS_PARALLELISM", None)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # what datasets.map(num_proc=...) leaves behind
    tokenization.restore_tokenizers_parallelism()
    assert "TOKENIZERS_PARALLELISM" not in os.environ


# ------------------------------------------------------------------------------ data that cannot teach


LONG_PROMPT = "Tell me about " + " ".join(f"topic{i}" for i in range(60)) + "."


def write_dataset(tmp_path, rows, entry=None):
    folder = tmp_path / "teach"
    folder.mkdir()
    (folder / "d.json").write_text(json.dumps(rows))
    (folder / "dataset_info.json").write_text(json.dumps({"d": {"file_name": "d.json", **(entry or {})}}))
    return str(folder)


def test_every_answer_truncated_away_stops_the_run(make_cfg, tmp_path):
    folder = write_dataset(tmp_path, [{"instruction": LONG_PROMPT, "output": "ok"}] * 3)
    with pytest.raises(DataError) as caught:
        build(make_cfg(dataset_dir=folder, dataset="d", cutoff_len=8))
    assert str(caught.value) == (
        "dataset 'd': every one of the 3 training examples has all its labels masked (-100) after tokenization: "
        "cutoff_len (8) truncates the answers away, so training would run at loss 0 and learn nothing. Raise "
        "cutoff_len, or shorten the prompts")



def learnability_warnings(caplog):
    """The learnability check's own warnings (other loggers, e.g. the tokenizer's eos notice, may log too)."""
    return [record.getMessage() for record in caplog.records if record.name == "tuneforge.data.learnability"]

def test_some_answers_truncated_away_is_a_warning_with_counts(make_cfg, tmp_path, caplog):
    answer = "one two three four five six seven eight"
    rows = [{"instruction": LONG_PROMPT, "output": answer}, {"instruction": "Hi", "output": answer}] * 2
    folder = write_dataset(tmp_path, rows)
    with caplog.at_level(logging.WARNING, logger="tuneforge.data.learnability"):
        module = build(make_cfg(dataset_dir=folder, dataset="d", cutoff_len=16))
    assert len(module.train_dataset) == 4
    assert learnability_warnings(caplog) == [
        "dataset 'd': 2 of 4 training examples have all their labels masked (-100) after tokenization (cutoff_len "
        "16 truncates their answers away); they teach nothing. Raise cutoff_len to keep them"]


PAIRS = {"ranking": True, "columns": {"prompt": "instruction", "chosen": "chosen", "rejected": "rejected"}}


def test_preference_pairs_with_the_same_answers(make_cfg, tmp_path, caplog):
    same = [{"instruction": f"Q{i}", "chosen": "Yes.", "rejected": "Yes."} for i in range(3)]
    folder = write_dataset(tmp_path, same, PAIRS)
    with pytest.raises(DataError) as caught:
        build(make_cfg(dataset_dir=folder, dataset="d", stage="dpo"))
    assert str(caught.value) == (
        "dataset 'd': in every one of the 3 training pairs the chosen and the rejected answer are the same after "
        "tokenization, so there is nothing to prefer. Give each pair two different answers (or raise cutoff_len "
        "if it cuts them to the same tokens)")

    (tmp_path / "teach" / "d.json").write_text(json.dumps(
        same[:1] + [{"instruction": "Q", "chosen": "Yes.", "rejected": "No, never."}] * 2))
    with caplog.at_level(logging.WARNING, logger="tuneforge.data.learnability"):
        module = build(make_cfg(dataset_dir=folder, dataset="d", stage="rm"))
    assert len(module.train_dataset) == 3
    assert learnability_warnings(caplog) == ["dataset 'd': 1 of 3 training pairs have the same chosen and rejected answer after "
                               "tokenization; they teach nothing. Give each pair two different answers"]


@pytest.mark.parametrize("tag, kind, other", [(True, "desirable (kto_tag true)", "undesirable (kto_tag false)"),
                                              (False, "undesirable (kto_tag false)", "desirable (kto_tag true)")])
def test_kto_data_with_one_kind_of_label_stops_the_run(make_cfg, tmp_path, tag, kind, other):
    rows = [{"instruction": f"Q{i}", "output": f"A{i}", "kto_tag": tag} for i in range(4)]
    folder = write_dataset(tmp_path, rows, {"columns": {"prompt": "instruction", "response": "output",
                                                        "kto_tag": "kto_tag"}})
    with pytest.raises(DataError) as caught:
        build(make_cfg(dataset_dir=folder, dataset="d", stage="kto"))
    assert str(caught.value) == (
        f"dataset 'd': all 4 training examples are {kind}; KTO learns from the contrast between desirable and "
        f"undesirable answers and needs both. Add {other} examples, or use stage sft for desirable-only data")


def write_datasets(tmp_path, datasets, entry=None):
    """A dataset_dir holding one JSON file per name in `datasets` ({name: rows})."""
    folder = tmp_path / "teach"
    folder.mkdir()
    for name, rows in datasets.items():
        (folder / f"{name}.json").write_text(json.dumps(rows))
    (folder / "dataset_info.json").write_text(json.dumps({name: {"file_name": f"{name}.json", **(entry or {})}
                                                          for name in datasets}))
    return str(folder)


def test_an_evaluation_split_whose_answers_are_truncated_away_is_named(make_cfg, tmp_path, caplog):
    good = [{"instruction": "Hi", "output": "Hello there."}] * 4
    cut = [{"instruction": LONG_PROMPT, "output": "ok"}] * 3
    folder = write_datasets(tmp_path, {"d": good, "e": cut})
    with pytest.raises(DataError) as caught:
        build(make_cfg(dataset_dir=folder, dataset="d", eval_dataset="e", cutoff_len=8))
    assert str(caught.value) == (
        "dataset 'e': every one of the 3 evaluation examples (split validation) has all its labels masked (-100) "
        "after tokenization: cutoff_len (8) truncates the answers away, so the evaluation loss would be undefined "
        "(no token to measure). Raise cutoff_len, or shorten the prompts")

    (tmp_path / "teach" / "e.json").write_text(json.dumps(cut[:1] + good[:1]))
    with caplog.at_level(logging.WARNING, logger="tuneforge.data.learnability"):
        build(make_cfg(dataset_dir=folder, dataset="d", eval_dataset="e", cutoff_len=8))
    assert learnability_warnings(caplog) == [
        "dataset 'e': 1 of 2 evaluation examples (split validation) have all their labels masked (-100) after "
        "tokenization (cutoff_len 8 truncates their answers away); they measure nothing. Raise cutoff_len to keep "
        "them"]


def test_evaluation_pairs_and_kto_tags_are_checked(make_cfg, tmp_path, caplog):
    differ = [{"instruction": f"Q{i}", "chosen": "Yes.", "rejected": "No, never."} for i in range(6)]
    same = [{"instruction": f"Q{i}", "chosen": "Yes.", "rejected": "Yes."} for i in range(6)]
    folder = write_datasets(tmp_path, {"d": differ, "e": same}, PAIRS)
    with pytest.raises(DataError, match=r"^dataset 'e': in every one of the 6 evaluation pairs \(split "
                                        r"validation\) the chosen and the rejected answer are the same"):
        build(make_cfg(dataset_dir=folder, dataset="d", eval_dataset="e", stage="dpo"))

    kto = {"columns": {"prompt": "instruction", "response": "output", "kto_tag": "kto_tag"}}
    rows = [{"instruction": f"Q{i}", "output": f"A{i}", "kto_tag": i % 2 == 0} for i in range(8)]
    desirable = [dict(row, kto_tag=True) for row in rows]
    (tmp_path / "teach").rename(tmp_path / "pairs")
    folder = write_datasets(tmp_path, {"d": rows, "e": desirable}, kto)
    with caplog.at_level(logging.WARNING, logger="tuneforge.data.learnability"):
        module = build(make_cfg(dataset_dir=folder, dataset="d", eval_dataset="e", stage="kto"))
    assert len(module.eval_dataset) == 8  # an evaluation of one kind still measures that kind: a warning
    assert [record.message for record in caplog.records if record.name == "tuneforge.data.learnability"] == [
        "dataset 'e': all 8 evaluation examples (split validation) are desirable (kto_tag true); the evaluation "
        "measures only those. Add undesirable (kto_tag false) examples to measure both"]


def test_a_streaming_dataset_is_checked_on_its_first_rows(make_cfg, tmp_path):
    folder = write_dataset(tmp_path, [{"instruction": LONG_PROMPT, "output": "ok"}] * 5)
    with pytest.raises(DataError) as caught:
        build(make_cfg(dataset_dir=folder, dataset="d", cutoff_len=8, streaming=True, max_steps=10))
    assert str(caught.value).startswith(
        "dataset 'd': every one of the 5 training examples (checked on the first 5 rows of the stream) has all its "
        "labels masked (-100) after tokenization: cutoff_len (8) truncates the answers away, so training would run "
        "at loss 0 and learn nothing.")
