"""The dataset registry: what each name in `dataset:` / `eval_dataset:` refers to.

A name is looked up in `<dataset_dir>/dataset_info.json` (LLaMA-Factory's file, read unchanged). A name
that is not registered may be a path to a data file or folder (relative to dataset_dir, then to the
working directory, or absolute); its format is then inferred from the first row (formats/infer.py), so
users do not have to edit dataset_info.json for every file.

Facts kept from LLaMA-Factory 0.9.5:
- defaults: formatting alpaca, split "train"; alpaca columns instruction/input/output, sharegpt column
  conversations, tags from/value/human/gpt/observation/function_call/system;
- when an entry has a `columns` (or `tags`) object, every column (tag) it does not list is unset;
- a hub url wins over file_name; ms_hub_url is used with USE_MODELSCOPE_HUB=1 or when there is no
  hf_hub_url (om_hub_url likewise with USE_OPENMIND_HUB=1).
One addition: `formatting: openai` without `tags` uses OpenAI's role/content/user/assistant/tool names
(LLaMA-Factory would look for "from"/"value" keys and fail on every row).
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..runtime import runtime

logger = logging.getLogger(__name__)

DATA_CONFIG = "dataset_info.json"
FORMATTINGS = ("alpaca", "sharegpt", "openai")
SOURCE_KEYS = ("file_name", "hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")
ENTRY_KEYS = SOURCE_KEYS + ("formatting", "ranking", "subset", "split", "folder", "num_samples", "columns", "tags")


@dataclass
class Columns:
    """Column names in the data file for each role of the canonical row (None: not used)."""

    prompt: str | None = "instruction"
    query: str | None = "input"
    response: str | None = "output"
    history: str | None = None
    messages: str | None = "conversations"
    system: str | None = None
    tools: str | None = None
    images: str | None = None
    videos: str | None = None
    audios: str | None = None
    chosen: str | None = None
    rejected: str | None = None
    kto_tag: str | None = None


@dataclass
class Tags:
    """Keys and role names inside sharegpt/openai messages."""

    role_tag: str | None = "from"
    content_tag: str | None = "value"
    user_tag: str | None = "human"
    assistant_tag: str | None = "gpt"
    observation_tag: str | None = "observation"
    function_tag: str | None = "function_call"
    system_tag: str | None = "system"


OPENAI_TAGS = Tags("role", "content", "user", "assistant", "tool", "function_call", "system")
COLUMN_KEYS = tuple(f.name for f in fields(Columns))
TAG_KEYS = tuple(f.name for f in fields(Tags))


@dataclass
class DatasetAttr:
    """One dataset as resolved from dataset_info.json (or inferred from a path).

    `dataset_name` is LLaMA-Factory's: the file name relative to dataset_dir, the hub id or the script.
    `path` is the resolved local file or folder (load_from "file" only). `declared_columns` are the
    column keys the user wrote (or inference found): those must exist in the data, while a missing
    default column (e.g. alpaca's "input") is simply unused.
    """

    name: str
    load_from: str  # "file" | "hf_hub" | "ms_hub" | "om_hub" | "script"
    dataset_name: str
    formatting: str = "alpaca"
    ranking: bool = False
    subset: str | None = None
    split: str = "train"
    folder: str | None = None
    num_samples: int | None = None
    columns: Columns = field(default_factory=Columns)
    tags: Tags = field(default_factory=Tags)
    declared_columns: tuple[str, ...] = ()
    path: str | None = None
    info_file: str | None = None

    @property
    def where(self) -> str:
        """Where the definition came from, for error messages."""
        return self.info_file or f"the format inferred for {self.path}"

    @property
    def source(self) -> str:
        """The data behind it: local path or hub id."""
        return self.path or self.dataset_name


def get_dataset_attrs(names: list[str] | str | None, dataset_dir: str | dict) -> list[DatasetAttr]:
    """Resolve dataset names (registry names or paths) to their definitions.

    Every problem found (unknown names, bad entries, missing files) is reported in one DataError.
    `dataset_dir` may also be a dict (an already-loaded dataset_info), "ONLINE" (names are hub ids) or
    "REMOTE:<hub repo>" (dataset_info.json is downloaded from that dataset repo), as in LLaMA-Factory.
    """
    names = _as_list(names)
    if not names:
        return []
    if dataset_dir == "ONLINE":
        return [DatasetAttr(name, runtime().hub, name) for name in names]

    info, info_file, info_problem = _read_dataset_info(dataset_dir)
    base_dir = "." if isinstance(dataset_dir, dict) or dataset_dir.startswith("REMOTE:") else dataset_dir
    attrs, problems = [], []
    for name in names:
        try:
            if info is not None and name in info:
                attrs.append(attr_from_entry(name, info[name], info_file, base_dir))
            else:
                attrs.append(_attr_from_path(name, base_dir, info, info_file, info_problem))
        except DataError as error:
            problems.append(str(error))
    if problems:
        # One entry per dataset in `problems`, for callers that merge problem lists (preflight).
        raise DataError(problems[0] if len(problems) == 1 else
                        f"{len(problems)} problems with the datasets:\n" + "\n".join(f"  - {p}" for p in problems),
                        problems)
    return attrs


def attr_from_entry(name: str, entry: Any, info_file: str, dataset_dir: str) -> DatasetAttr:
    """A DatasetAttr from one dataset_info.json entry, after checking every key of it."""
    where = f"{info_file}: dataset '{name}'"
    problems = _entry_problems(entry, where)
    if problems:
        raise DataError(problems[0] if len(problems) == 1 else "; ".join(problems))

    load_from, dataset_name = _pick_source(entry)
    formatting = entry.get("formatting", "alpaca")
    attr = DatasetAttr(
        name=name, load_from=load_from, dataset_name=dataset_name, formatting=formatting,
        ranking=entry.get("ranking", False), subset=entry.get("subset"), split=entry.get("split", "train"),
        folder=entry.get("folder"), num_samples=entry.get("num_samples"), info_file=info_file,
    )
    if "columns" in entry:  # listed columns replace all defaults (LLaMA-Factory)
        attr.columns = Columns(**{key: entry["columns"].get(key) for key in COLUMN_KEYS})
        attr.declared_columns = tuple(k for k in COLUMN_KEYS if entry["columns"].get(k))
    if "tags" in entry:
        attr.tags = Tags(**{key: entry["tags"].get(key) for key in TAG_KEYS})
    elif formatting == "openai":
        attr.tags = Tags(**vars(OPENAI_TAGS))

    if load_from == "file":
        path = Path(dataset_dir) / dataset_name
        if not path.exists():
            raise DataError(f"{where}: file_name '{dataset_name}' not found: looked for {path.resolve()} "
                            f"(dataset_dir '{dataset_dir}' + file_name). Fix file_name in {info_file} or "
                            "set dataset_dir to the folder holding the data")
        attr.path = str(path)
    return attr


# ------------------------------------------------------------------------------------------ internals


def _as_list(names: list[str] | str | None) -> list[str]:
    if names is None:
        return []
    if isinstance(names, str):
        names = names.split(",")
    return [name.strip() for name in names if name and name.strip()]


def _read_dataset_info(dataset_dir: str | dict) -> tuple[dict | None, str, str | None]:
    """(entries or None, the file's name for messages, why it could not be read or None)."""
    if isinstance(dataset_dir, dict):
        return dataset_dir, DATA_CONFIG, None
    if dataset_dir.startswith("REMOTE:"):
        repo = dataset_dir[len("REMOTE:"):]
        try:
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(repo_id=repo, filename=DATA_CONFIG, repo_type="dataset")
        except Exception as error:  # offline, no such repo, ...
            raise DataError(f"dataset_dir '{dataset_dir}': could not download {DATA_CONFIG} from the dataset "
                            f"repo '{repo}' ({type(error).__name__}: {error}). Download the repo and set "
                            "dataset_dir to its local folder") from None
    else:
        path = os.path.join(dataset_dir, DATA_CONFIG)
    if not os.path.isfile(path):
        return None, path, f"{path} does not exist"
    try:
        with open(path, encoding="utf-8") as file:
            info = json.load(file)
    except json.JSONDecodeError as error:
        raise DataError(f"{path} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}. "
                        "Fix the file (a JSON object mapping dataset names to their definitions)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path} cannot be read: {error}") from None
    if not isinstance(info, dict):
        raise DataError(f"{path} must hold a JSON object mapping dataset names to definitions, "
                        f"found a {type(info).__name__}")
    return info, path, None


def _entry_problems(entry: Any, where: str) -> list[str]:
    if not isinstance(entry, dict):
        return [f"{where}: the definition must be a JSON object, found {type(entry).__name__}"]
    problems = []
    for key in entry:
        if key not in ENTRY_KEYS:
            problems.append(f"{where}: unknown key '{key}'{_did_you_mean(key, ENTRY_KEYS)}. "
                            f"Allowed keys: {', '.join(ENTRY_KEYS)}")
    if not any(key in entry for key in SOURCE_KEYS):
        problems.append(f"{where}: no data source; set file_name (a file or folder in dataset_dir) "
                        "or hf_hub_url / ms_hub_url / script_url")
    if "cloud_file_name" in entry and not any(key in entry for key in SOURCE_KEYS if key != "cloud_file_name"):
        problems.append(f"{where}: cloud_file_name (S3/GCS) is not implemented yet; download the file and "
                        "point file_name at it")
    for key in ("file_name", "hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "subset", "split", "folder"):
        if key in entry and not (isinstance(entry[key], str) and entry[key]) \
                and not (entry[key] is None and key in ("subset", "folder")):
            problems.append(f"{where}: '{key}' must be a non-empty string, found {entry[key]!r}")
    if entry.get("formatting", "alpaca") not in FORMATTINGS:
        problems.append(f"{where}: formatting '{entry['formatting']}' is not one of {', '.join(FORMATTINGS)}"
                        f"{_did_you_mean(str(entry['formatting']), FORMATTINGS)}")
    if not isinstance(entry.get("ranking", False), bool):
        problems.append(f"{where}: ranking must be true or false, found {entry['ranking']!r}")
    num = entry.get("num_samples")
    if num is not None and (isinstance(num, bool) or not isinstance(num, int) or num <= 0):
        problems.append(f"{where}: num_samples must be a positive integer, found {num!r}")
    problems += _mapping_problems(entry, "columns", COLUMN_KEYS, where)
    problems += _mapping_problems(entry, "tags", TAG_KEYS, where)
    return problems


def _mapping_problems(entry: dict, key: str, allowed: tuple[str, ...], where: str) -> list[str]:
    if key not in entry:
        return []
    mapping = entry[key]
    if not isinstance(mapping, dict):
        return [f"{where}: '{key}' must be a JSON object, found {type(mapping).__name__}"]
    problems = []
    for name, value in mapping.items():
        if name not in allowed:
            problems.append(f"{where}: unknown {key} key '{name}'{_did_you_mean(name, allowed)}. "
                            f"Allowed: {', '.join(allowed)}")
        elif value is not None and not (isinstance(value, str) and value):
            problems.append(f"{where}: {key}.{name} must be a non-empty string, found {value!r}")
    return problems


def _did_you_mean(word: str, choices: tuple[str, ...] | list[str], n: int = 1) -> str:
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(f"'{c}'" for c in close) + "?)"


def _pick_source(entry: dict) -> tuple[str, str]:
    has_hf, has_ms, has_om = ("hf_hub_url" in entry), ("ms_hub_url" in entry), ("om_hub_url" in entry)
    if has_hf or has_ms or has_om:
        hub = runtime().hub  # USE_MODELSCOPE_HUB / USE_OPENMIND_HUB
        if has_ms and (hub == "ms_hub" or not has_hf):
            return "ms_hub", entry["ms_hub_url"]
        if has_om and (hub == "om_hub" or not has_hf):
            return "om_hub", entry["om_hub_url"]
        return "hf_hub", entry["hf_hub_url"]
    if "script_url" in entry:
        return "script", entry["script_url"]
    return "file", entry["file_name"]


def _attr_from_path(name: str, dataset_dir: str, info: dict | None, info_file: str,
                    info_problem: str | None) -> DatasetAttr:
    """A dataset named by path: dataset_dir/name, then name itself (cwd-relative or absolute)."""
    candidates = [Path(dataset_dir) / name, Path(name)]
    for path in candidates:
        if path.exists():
            from .formats.infer import infer_entry
            from .readers import peek_first_row

            entry = infer_entry(peek_first_row(path, name), name, str(path))
            attr = attr_from_entry(name, {**entry, "file_name": str(path.resolve())},
                                   f"(format inferred from {path})", dataset_dir)
            attr.info_file = None
            attr.declared_columns = tuple(k for k in COLUMN_KEYS if getattr(attr.columns, k))
            logger.info("dataset '%s': no dataset_info.json entry, format inferred from its columns: %s",
                        name, json.dumps(entry))
            return attr

    looked = " and ".join(str(p.resolve()) for p in dict.fromkeys(candidates))
    if info is None:
        raise DataError(f"dataset '{name}': {info_problem}, and '{name}' is not a file or folder (looked for "
                        f"{looked}). Set dataset_dir to the folder holding {DATA_CONFIG}, or give the path to "
                        "a data file")
    close = difflib.get_close_matches(name, list(info), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise DataError(f"dataset '{name}' is not defined in {info_file} and is not a file or folder (looked for "
                    f"{looked}).{hint} Add an entry to {info_file} or give the path to a data file")
