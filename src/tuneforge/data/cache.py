"""Disk cache of tokenized datasets, so a second run with the same inputs skips loading and tokenizing.

The key is a hash of everything that can change the tokenized output:
- the content of every data file (a streamed sha256; size+mtime alone would miss an edit that keeps both,
  so they only index a small table of known hashes to avoid re-reading unchanged files);
- the dataset definitions (dataset_info.json entries: columns, tags, formatting, ...);
- the tokenizer (its serialized vocab, merges, normalizer and added tokens, plus its special tokens);
- the template name and its rendering parameters;
- every data parameter that changes the output (cutoff_len, packing, stage, val_size, seed, ...);
- the tuneforge version and CACHE_FORMAT, so a change in processing code never reuses stale output.

Layout: <root>/preprocessed/<key>/manifest.json + <split>/*.arrow, where <root> is `cache_dir` when set,
else $TUNEFORGE_CACHE, else ~/.cache/tuneforge. An entry is built in a temporary folder and renamed into
place, so a crash never leaves a half-written entry that a later run would load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..runtime import runtime

if TYPE_CHECKING:
    from ..config.groups import DataArgs, TrainArgs
    from .processors import ProcessingOptions

logger = logging.getLogger(__name__)

# Bump when processors change what they write for the same inputs.
CACHE_FORMAT = 1
_HASH_CHUNK = 1 << 20
_FILE_INDEX = "file_hashes.json"


def cache_root(cache_dir: str | None = None) -> Path:
    """`cache_dir`/tuneforge when the model's cache_dir is set, else $TUNEFORGE_CACHE or ~/.cache/tuneforge."""
    if cache_dir:
        return Path(cache_dir).expanduser() / "tuneforge"
    return Path(runtime().cache_root)


def _files_under(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path]


class FileHasher:
    """Content hashes of files, remembered by (path, size, mtime) in a small JSON table under the root."""

    def __init__(self, root: Path):
        self.index_path = root / _FILE_INDEX
        try:
            self.index = json.loads(self.index_path.read_text())
        except (OSError, ValueError):
            self.index = {}
        self.changed = False

    def hash(self, path: Path) -> str:
        stat = path.stat()
        entry_key = str(path.resolve())
        stamp = [stat.st_size, stat.st_mtime_ns]
        known = self.index.get(entry_key)
        if known and known[0] == stamp:
            return known[1]
        digest = hashlib.sha256()
        with open(path, "rb") as stream:
            while chunk := stream.read(_HASH_CHUNK):
                digest.update(chunk)
        self.index[entry_key] = [stamp, digest.hexdigest()]
        self.changed = True
        return digest.hexdigest()

    def save(self) -> None:
        if not self.changed:
            return
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.index_path.with_suffix(f".{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(self.index))
        os.replace(tmp, self.index_path)


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of what decides how the tokenizer encodes: its full serialized form and special tokens."""
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode("utf-8"))
    else:  # slow tokenizer: its vocabulary and added tokens
        digest.update(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode("utf-8"))
    specials = {
        "class": type(tokenizer).__name__,
        "special_tokens": {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())},
        "added": sorted(str(t) for t in tokenizer.get_added_vocab()),
        "add_bos_token": getattr(tokenizer, "add_bos_token", None),
        "split_special_tokens": getattr(tokenizer, "split_special_tokens", None),
        "model_input_names": list(getattr(tokenizer, "model_input_names", [])),
    }
    digest.update(json.dumps(specials, sort_keys=True, default=str).encode("utf-8"))
    return digest.hexdigest()


def compute_cache_key(
    data_files: list[Path],
    dataset_definitions: list[Any],
    tokenizer: Any,
    template_params: dict[str, Any],
    data_params: dict[str, Any],
    root: Path,
) -> str:
    """The cache key (hex) for these inputs; see the module docstring for what goes in."""
    from .. import __version__

    hasher = FileHasher(root)
    files = sorted({str(p.resolve()): p for f in data_files for p in _files_under(Path(f))}.items())
    payload = {
        "format": CACHE_FORMAT,
        "version": __version__,
        "files": [[name, hasher.hash(path)] for name, path in files],
        "datasets": [repr(d) for d in dataset_definitions],
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "template": template_params,
        "data": data_params,
    }
    hasher.save()
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:32]


def key_params(data: DataArgs, train: TrainArgs) -> dict[str, Any]:
    """Every parameter that can change the tokenized output (the processing options add the derived ones)."""
    return {
        "dataset": data.dataset, "eval_dataset": data.eval_dataset, "dataset_dir": data.dataset_dir,
        "media_dir": data.media_dir, "cutoff_len": data.cutoff_len, "train_on_prompt": data.train_on_prompt,
        "mask_history": data.mask_history, "packing": data.packing, "neat_packing": data.neat_packing,
        "max_samples": data.max_samples, "val_size": data.val_size, "seed": train.seed,
        "mix_strategy": data.mix_strategy, "interleave_probs": data.interleave_probs,
        "eval_on_each_dataset": data.eval_on_each_dataset, "preprocessing_batch_size": data.preprocessing_batch_size,
        "predict_with_generate": train.predict_with_generate, "template": data.template,
        "tool_format": data.tool_format, "default_system": data.default_system,
        "enable_thinking": data.enable_thinking, "preserve_thinking": data.preserve_thinking,
    }


def key_for_config(data: DataArgs, train: TrainArgs, stage: str, tokenizer: Any, template: Any,
                   options: ProcessingOptions, root: Path) -> str | None:
    """The cache key of a run, or None when a dataset comes from a hub or a script (its content cannot be
    hashed here, so it is not cached)."""
    from .readers import map_workers
    from .registry import get_dataset_attrs
    from .templates import tool_formats

    attrs = get_dataset_attrs(list(data.dataset or []) + list(data.eval_dataset or []), data.dataset_dir)
    paths = [Path(attr.path) for attr in attrs if attr.load_from == "file" and attr.path is not None]
    if len(paths) < len(attrs):
        return None
    data_params = key_params(data, train)
    # The worker count moves batch boundaries, and so pt blocks, packed rows and kto pairs.
    data_params.update(stage=stage, num_proc=map_workers(data), options=repr(options))
    template_params = {"repr": repr(template), "efficient_eos": bool(template.efficient_eos),
                       "media": repr(getattr(template, "media_plugin", None)),  # image token counts
                       "today": tool_formats.today()}  # the llama3 tool prompt carries the date
    return compute_cache_key(paths, attrs, tokenizer, template_params, data_params, root)


def entry_path(root: Path, key: str) -> Path:
    return root / "preprocessed" / key


def load_entry(path: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(splits as Datasets, manifest) from a complete cache entry, or None when there is none."""
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        return None
    from datasets import Dataset, concatenate_datasets

    try:
        manifest = json.loads(manifest_path.read_text())
        splits = {}
        for split, files in manifest["splits"].items():
            parts = [Dataset.from_file(str(path / name)) for name in files]
            splits[split] = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    except (OSError, ValueError, KeyError) as error:  # damaged entry: tokenize again
        logger.warning("ignoring the damaged cache entry %s (%s)", path, error)
        return None
    return splits, manifest


def new_work_dir(root: Path) -> Path:
    """A private folder to write a cache entry into before `commit_entry` moves it into place."""
    work = root / "preprocessed" / f".tmp-{uuid.uuid4().hex}"
    work.mkdir(parents=True)
    return work


def commit_entry(work: Path, final: Path, splits: dict[str, Any], extra: dict[str, Any]) -> Path:
    """Record the splits' arrow files (all under `work`) in a manifest and move `work` to `final`,
    replacing an older entry of the same key (overwrite_cache). Returns `final`."""
    manifest = {"splits": {}, **extra}
    for split, dataset in splits.items():
        names = []
        for cache_file in dataset.cache_files:
            file = Path(cache_file["filename"]).resolve()
            if work.resolve() not in file.parents:
                raise RuntimeError(f"cache file {file} is outside the cache work folder {work}")
            names.append(str(file.relative_to(work.resolve())))
        if dataset._indices is not None:  # noqa: SLF001  (a select/shuffle view: not a plain file)
            raise RuntimeError("cannot cache a dataset view; flatten it first")
        manifest["splits"][split] = names
    (work / "manifest.json").write_text(json.dumps(manifest, indent=1))
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():  # move the old entry aside first: rename cannot replace a non-empty folder
        stale = final.with_name(f".stale-{uuid.uuid4().hex}")
        os.rename(final, stale)
        shutil.rmtree(stale, ignore_errors=True)
    os.rename(work, final)
    return final


def discard(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
