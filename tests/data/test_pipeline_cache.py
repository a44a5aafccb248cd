"""The tokenized-data cache: what changes the key, content hashing, and entry commit/load."""

import os
from pathlib import Path

import pytest

from tuneforge.data import cache


@pytest.fixture
def tokenizer(tiny_tokenizer):
    return tiny_tokenizer


def key(root, files, tokenizer, template=None, data=None, datasets=("alpaca",)):
    return cache.compute_cache_key(files, list(datasets), tokenizer, template or {"template": "qwen"},
                                   data or {"cutoff_len": 128}, root)


def test_key_changes_with_every_input(tmp_path, tokenizer):
    data = tmp_path / "data.json"
    data.write_text('[{"instruction": "a", "output": "b"}]')
    root = tmp_path / "cache"
    base = key(root, [data], tokenizer)
    assert key(root, [data], tokenizer) == base
    assert key(root, [data], tokenizer, data={"cutoff_len": 64}) != base
    assert key(root, [data], tokenizer, template={"template": "llama3"}) != base
    assert key(root, [data], tokenizer, datasets=("alpaca", "columns changed")) != base
    data.write_text('[{"instruction": "a", "output": "c"}]')
    os.utime(data, ns=(1, 1))  # new content, new mtime: rehashed
    assert key(root, [data], tokenizer) != base


def test_key_changes_with_the_tokenizer(tmp_path, tokenizer):
    data = tmp_path / "data.json"
    data.write_text("[]")
    before = key(tmp_path, [data], tokenizer)
    tokenizer.add_special_tokens({"eos_token": "<|im_end|>"})
    assert key(tmp_path, [data], tokenizer) != before


def test_file_hashes_are_remembered_by_size_and_mtime(tmp_path):
    data = tmp_path / "data.json"
    data.write_text("hello")
    hasher = cache.FileHasher(tmp_path)
    first = hasher.hash(data)
    hasher.save()
    # Same size and mtime: the remembered hash is used without reading the file again.
    stat = data.stat()
    data.write_text("HELLO")
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert cache.FileHasher(tmp_path).hash(data) == first
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert cache.FileHasher(tmp_path).hash(data) != first


def test_folder_datasets_hash_every_file(tmp_path, tokenizer):
    folder = tmp_path / "shards"
    folder.mkdir()
    (folder / "a.jsonl").write_text("{}\n")
    before = key(tmp_path / "c", [folder], tokenizer)
    (folder / "b.jsonl").write_text("{}\n")
    assert key(tmp_path / "c", [folder], tokenizer) != before


def test_commit_and_load_entry_round_trip(tmp_path):
    from datasets import Dataset

    root = tmp_path / "cache"
    work = cache.new_work_dir(root)
    source = Dataset.from_dict({"x": [1, 2, 3]})
    train = source.map(lambda b: {"y": [v * 2 for v in b["x"]]}, batched=True,
                       cache_file_name=str(work / "train" / "data.arrow"))
    final = cache.entry_path(root, "k" * 32)
    assert cache.load_entry(final) is None
    cache.commit_entry(work, final, {"train": train}, {"reports": ["2 rows skipped"]})
    splits, manifest = cache.load_entry(final)
    assert splits["train"]["y"] == [2, 4, 6]
    assert manifest["reports"] == ["2 rows skipped"]
    assert not work.exists()
    # Committing the same key again (overwrite_cache) replaces the entry.
    work2 = cache.new_work_dir(root)
    again = source.map(lambda b: {"y": [v * 3 for v in b["x"]]}, batched=True,
                       cache_file_name=str(work2 / "train" / "data.arrow"))
    cache.commit_entry(work2, final, {"train": again}, {})
    assert cache.load_entry(final)[0]["train"]["y"] == [3, 6, 9]


def test_cache_root_honours_cache_dir_and_env(tmp_path, monkeypatch):
    assert cache.cache_root(str(tmp_path)) == Path(tmp_path) / "tuneforge"
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "env"))
    assert cache.cache_root(None) == tmp_path / "env"


def test_a_damaged_entry_is_ignored(tmp_path):
    entry = tmp_path / "entry"
    entry.mkdir()
    (entry / "manifest.json").write_text('{"splits": {"train": ["train/missing.arrow"]}}')
    assert cache.load_entry(entry) is None
