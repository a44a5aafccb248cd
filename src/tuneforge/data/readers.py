"""Readers: data files, folders and hub datasets -> HF `Dataset` (or `IterableDataset` when streaming).

Local files go through HF datasets' packaged builders (json, csv, parquet, arrow, text): they convert to
memory-mapped Arrow in `cache_dir` once and reuse it on the next run, which measured as fast as reading
with pyarrow directly (100k alpaca rows: 0.4 s from JSON lines, 1.8 s from a JSON list) at half the
memory. A folder is read file by file in name order, so each row can be traced back to its file.
With `streaming`, files are read lazily (nothing is converted up front), for data larger than memory.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import DataError
from ..runtime import runtime

if TYPE_CHECKING:
    from ..config.groups import DataArgs, ModelArgs
    from .registry import DatasetAttr

# File extension -> HF datasets builder (LLaMA-Factory's table).
FILE_TYPES = {"arrow": "arrow", "csv": "csv", "json": "json", "jsonl": "json", "parquet": "parquet", "txt": "text"}
# JSON list files larger than this are rewritten as JSON lines before reading (see _json_list_as_lines).
JSON_LIST_REWRITE_BYTES = 8 << 20
# The datasets JSON reader infers the column types from its first chunk (10 MB by default). A field that holds
# a string there and an object in a later chunk (an openai function call given as an object in one row) is
# then silently JSON-encoded in that whole later chunk: the object becomes a string and the strings of the
# other rows gain quotes. Read files up to this size in one chunk, so the reader sees the clash, reads the
# field as JSON values and the row checks name the one bad row.
JSON_ONE_CHUNK_BYTES = 512 << 20
JSON_CHUNK_BYTES = 10 << 20  # datasets' default chunk, kept for larger files
HUB_NAMES = {"hf_hub": "Hugging Face Hub", "ms_hub": "ModelScope Hub", "om_hub": "Modelers (openMind) Hub",
             "script": "dataset script/folder"}


@dataclass
class LocalData:
    """A local dataset and where its rows come from: file i holds rows offsets[i] .. offsets[i+1]-1.
    (A hub dataset has one "file": its id.)"""

    dataset: Any
    files: Sequence[Path | str]
    offsets: list[int] = field(default_factory=lambda: [0])

    def locate(self, row: int) -> tuple[str, int]:
        """(file name, row index inside that file) of a dataset row."""
        index = max(bisect.bisect_right(self.offsets, row) - 1, 0)
        return str(self.files[index]), row - self.offsets[index]


def data_files(path: Path, name: str) -> tuple[str, list[Path]]:
    """(builder, files) for a data file or a folder of files of one type."""
    if path.is_dir():
        entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
        folders = [p.name for p in entries if p.is_dir()]
        if folders:
            raise DataError(f"dataset '{name}': folder {path} holds sub-folders ({', '.join(folders)}); a dataset "
                            "folder must hold data files only. Move them out or name the files separately")
        if not entries:
            raise DataError(f"dataset '{name}': folder {path} holds no data files")
        files = entries
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"dataset '{name}': file not found: {path.resolve()}")

    kinds: dict[str, list[str]] = {}
    for file in files:
        extension = file.suffix[1:].lower()
        if extension not in FILE_TYPES:
            raise DataError(f"dataset '{name}': {file} has an unsupported file type '.{extension}'; use one of "
                            f"{', '.join('.' + e for e in FILE_TYPES)}")
        kinds.setdefault(FILE_TYPES[extension], []).append(file.name)
    if len(kinds) > 1:
        found = "; ".join(f"{kind}: {', '.join(names[:3])}" for kind, names in kinds.items())
        raise DataError(f"dataset '{name}': folder {path} mixes file types ({found}). A dataset folder must hold "
                        "files of one type: move the others out or declare them as separate datasets")
    return next(iter(kinds)), files


def map_workers(data: DataArgs) -> int | None:
    """The process count for datasets.map / load_dataset: None (this process) unless more than one worker."""
    workers = data.preprocessing_num_workers
    return workers if workers and workers > 1 else None


def read_local(attr: DatasetAttr, model: ModelArgs, streaming: bool) -> LocalData:
    """The rows of a local file or folder (attr.path); non-streamed files are converted into model.cache_dir."""
    assert attr.path is not None, "the registry resolves the path of a file dataset"
    builder, files = data_files(Path(attr.path), attr.name)
    for file in files:
        check_readable(file, builder, attr.name)
    if streaming:
        from datasets import load_dataset

        dataset = _guarded(attr, files[0], lambda: load_dataset(
            builder, data_files=[str(f) for f in files], split="train", streaming=True))
        return LocalData(dataset, files)

    parts = [_read_file(attr, builder, file, model.cache_dir) for file in files]
    offsets = [0]
    for part in parts[:-1]:
        offsets.append(offsets[-1] + len(part))
    if len(parts) == 1:
        return LocalData(parts[0], files, offsets)
    from datasets import concatenate_datasets

    first = parts[0].features
    for file, part in zip(files, parts):
        if part.features != first:
            raise DataError(f"dataset '{attr.name}': {file} has different columns or types than {files[0]} "
                            f"({sorted(part.features)} vs {sorted(first)}); the files of a folder must share one "
                            "layout")
    return LocalData(concatenate_datasets(parts), files, offsets)


def read_hub(attr: DatasetAttr, data: DataArgs, model: ModelArgs, streaming: bool) -> Any:
    """A dataset from the HF Hub, ModelScope, openMind or a local dataset folder/script (script_url)."""
    hub = HUB_NAMES[attr.load_from]
    try:
        if attr.load_from == "ms_hub":
            return _read_modelscope(attr, model, streaming)
        if attr.load_from == "om_hub":
            # openmind is an optional extra without type information (not in mypy's ignore list).
            from openmind import OmDataset  # type: ignore[import-not-found]

            return OmDataset.load_dataset(path=attr.dataset_name, name=attr.subset, data_dir=attr.folder,
                                          split=attr.split, cache_dir=model.cache_dir,
                                          token=model.om_hub_token, streaming=streaming)
        from datasets import load_dataset

        path = attr.dataset_name
        if attr.load_from == "script":
            path = os.path.join(data.dataset_dir, attr.dataset_name)
        return load_dataset(path=path, name=attr.subset, data_dir=attr.folder, split=attr.split,
                            cache_dir=model.cache_dir, token=model.hf_hub_token,
                            num_proc=None if streaming else map_workers(data), streaming=streaming)
    except ImportError as error:
        package = "modelscope" if attr.load_from == "ms_hub" else "openmind"
        raise DataError(f"dataset '{attr.name}' comes from the {hub} ('{attr.dataset_name}'), which needs the "
                        f"'{package}' package ({error}). Install it with `pip install {package}`, or download the "
                        f"data and point file_name in {attr.where} at it") from None
    except Exception as error:  # offline, unknown repo, missing split, ...
        raise DataError(_hub_failure(attr, hub, error)) from None


def peek_first_row(path: Path, name: str) -> dict[str, Any]:
    """The first row of a file or folder, read cheaply (used to infer the format of a path dataset)."""
    builder, files = data_files(path, name)
    file = files[0]
    check_readable(file, builder, name)
    try:
        row = _FIRST_ROW[builder](file)
    except (ValueError, OSError, UnicodeDecodeError, csv.Error) as error:
        problem = json_problem(file) if builder == "json" and isinstance(error, ValueError) else None
        if problem is not None:
            raise DataError(f"dataset '{name}': {problem}. Fix the file (JSON files hold a list of objects, or one "
                            "object per line for .jsonl)") from None
        raise DataError(f"dataset '{name}': cannot read {file} as {builder}: {error}") from None
    if row is None:
        raise DataError(f"dataset '{name}': {file} holds no rows")
    return row


# Byte order marks of the encodings that are not UTF-8 (the longer UTF-32 marks first: they start like UTF-16's).
_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32LE"), (b"\x00\x00\xfe\xff", "UTF-32BE"), (b"\xff\xfe", "UTF-16LE"),
         (b"\xfe\xff", "UTF-16BE"))
_TEXT_BUILDERS = ("json", "csv", "text")
_HEAD_BYTES = 1 << 16


def check_readable(file: Path, builder: str, name: str) -> None:
    """Stop before the datasets reader on a file it would misreport: an empty file (its reader raises a bare
    StopIteration) and a text file that is not UTF-8 (a JSON parse error at row 0)."""
    with open(file, "rb") as handle:
        head = handle.read(_HEAD_BYTES)
    if not head:
        raise DataError(f"dataset '{name}': {file} is empty (0 bytes), so it holds no rows. Put the rows in it, or "
                        "remove it from the dataset")
    if builder not in _TEXT_BUILDERS:
        return
    encoding = text_encoding(head)
    if encoding is not None:
        converted = file.with_name(f"{file.stem}.utf8{file.suffix}")
        raise DataError(f"dataset '{name}': {file} is encoded as {encoding}, but data files must be UTF-8. Convert "
                        f"it, e.g. `iconv -f {encoding} -t UTF-8 {file} > {converted}`, and point the dataset at "
                        "the converted file")
    try:  # the datasets readers do not check: Arrow fails later, reading the strings
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < _HEAD_BYTES)
    except UnicodeDecodeError as error:
        raise DataError(f"dataset '{name}': {_not_utf8(file, error)}") from None
    if len(head) < _HEAD_BYTES and not text.strip():
        raise DataError(f"dataset '{name}': {file} is empty (it holds only whitespace), so it holds no rows. Put "
                        "the rows in it, or remove it from the dataset")


def text_encoding(head: bytes) -> str | None:
    """The encoding of a text file that is not UTF-8, found by its byte order mark (or, without one, by the
    zero bytes of UTF-16 text); None for UTF-8 (with or without its mark) and plain ASCII."""
    for mark, encoding in _BOMS:
        if head.startswith(mark):
            return encoding
    sample = head[:512]
    if len(sample) >= 4 and sample.count(0) * 3 >= len(sample):  # ASCII in UTF-16: every other byte is 0
        return "UTF-16LE" if sample[1] == 0 else "UTF-16BE"
    return None


def json_problem(file: Path) -> str | None:
    """Where a JSON / JSON lines file the datasets reader refused is broken, by its 1-based line number in
    the file; None when the json module reads it (the reader failed for another reason)."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        return _not_utf8(file, error)
    try:
        json.loads(text)
        return None  # one JSON document: not a syntax problem
    except json.JSONDecodeError as whole:
        document_error = whole
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    if _parses(first) or file.suffix.lower() == ".jsonl":  # JSON lines: one object per line
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                return f"line {number} of file {file} is not valid JSON: {error.msg} (column {error.colno})"
            if not isinstance(value, dict):
                return f"line {number} of file {file} is not a JSON object: it holds a {type(value).__name__}"
        return None
    return (f"line {document_error.lineno} of file {file} is not valid JSON: {document_error.msg} "
            f"(column {document_error.colno})")


def _not_utf8(file: Path, error: UnicodeDecodeError) -> str:
    return (f"{file} is not UTF-8 text (byte 0x{error.object[error.start]:02x} at position {error.start}). "
            f"Convert it to UTF-8, e.g. `iconv -f <its encoding> -t UTF-8 {file} > "
            f"{file.with_name(f'{file.stem}.utf8{file.suffix}')}`")


def _parses(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except json.JSONDecodeError:
        return False


# ------------------------------------------------------------------------------------------ internals


def _guarded(attr: DatasetAttr, file: Path, read: Callable[[], Any]) -> Any:
    """Run a datasets reader, turning its parse errors into a DataError that names the file."""
    try:
        return read()
    except Exception as error:
        raise _read_failure(attr, file, error) from None


def _read_failure(attr: DatasetAttr, file: Path, error: Exception) -> DataError:
    cause = error.__cause__ or error.__context__ or error
    detail = f"{type(cause).__name__}: {cause}".strip()
    if len(detail) > 300:
        detail = detail[:297] + "..."
    return DataError(f"dataset '{attr.name}': cannot read {file}: {detail}. Fix the file (JSON files hold a "
                     "list of objects, or one object per line for .jsonl)")


def _read_file(attr: DatasetAttr, builder: str, file: Path, cache_dir: str | None) -> Any:
    from datasets import load_dataset

    source = file
    if builder == "json":
        source = _json_list_as_lines(file, cache_dir) or file
    try:
        options = {"chunksize": _json_chunksize(source)} if builder == "json" else {}
        dataset = load_dataset(builder, data_files=[str(source)], split="train", cache_dir=cache_dir, **options)
    except Exception as error:
        problem = json_problem(file) if builder == "json" else None
        if problem is None:
            raise _read_failure(attr, file, error) from None
        raise DataError(f"dataset '{attr.name}': {problem}. Fix the file (JSON files hold a list of objects, or "
                        "one object per line for .jsonl)") from None
    if builder == "json" and len(dataset) == 1:
        dataset = _columns_to_rows(dataset)
    return dataset


def _json_chunksize(file: Path) -> int:
    size = file.stat().st_size
    return size + 1 if size <= JSON_ONE_CHUNK_BYTES else JSON_CHUNK_BYTES


_SPACES = re.compile(r"\s*")
_CHUNK_CHARS = 1 << 20


def _json_list_as_lines(file: Path, cache_dir: str | None) -> Path | None:
    """A JSON lines copy of a large JSON list file, or None to read the file as it is.

    HF datasets reads a JSON list with one json.load: 100k alpaca rows (86 MB) cost 450 MB of Python objects.
    Walking the list object by object, in chunks, and writing each object on its own line lets the Arrow
    JSON reader take it in blocks instead (peak memory: a chunk plus one object), and is faster too. The
    copy lives in the cache, keyed by the file's path, size and modification time. Anything unexpected
    (not a list of objects, a syntax error) returns None: the datasets reader then reads or reports it.
    """
    stat = file.stat()
    if stat.st_size < JSON_LIST_REWRITE_BYTES:
        return None
    key = hashlib.sha256(f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    if cache_dir is None:
        from datasets import config

        cache_dir = config.HF_DATASETS_CACHE
    target = Path(cache_dir) / "tuneforge_json_lines" / f"{file.stem}-{key}.jsonl"
    if target.is_file():
        return target

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    try:
        with open(file, encoding="utf-8-sig") as handle, open(partial, "w", encoding="utf-8") as out:
            for item in _json_list_items(handle):
                # Raw newlines cannot occur inside JSON strings, so they are layout and may become spaces.
                out.write(item.replace("\r", " ").replace("\n", " "))
                out.write("\n")
        os.replace(partial, target)
    except (json.JSONDecodeError, _NotAListOfObjects):
        return None
    finally:
        partial.unlink(missing_ok=True)
    return target


class _NotAListOfObjects(Exception):
    pass


def _json_list_items(handle):
    """The source text of each object of a JSON list, read from `handle` chunk by chunk."""
    decoder = json.JSONDecoder()
    buffer, position, at_end = "", 0, False

    def next_char() -> str:
        """Skip whitespace, reading more text as needed; "" at the end of the file."""
        nonlocal buffer, position, at_end
        while True:
            spaces = _SPACES.match(buffer, position)
            assert spaces is not None  # `\s*` matches at every position, if only the empty string
            position = spaces.end()
            if position < len(buffer) or at_end:
                return buffer[position] if position < len(buffer) else ""
            more = handle.read(_CHUNK_CHARS)
            at_end = not more
            buffer, position = buffer[position:] + more, 0

    if next_char() != "[":
        raise _NotAListOfObjects
    position += 1
    if next_char() == "]":
        return
    while True:
        if next_char() != "{":
            raise _NotAListOfObjects
        try:
            _, end = decoder.raw_decode(buffer, position)
        except json.JSONDecodeError:
            if at_end:
                raise
            more = handle.read(_CHUNK_CHARS)  # the object may continue in the next chunk
            at_end = not more
            buffer, position = buffer[position:] + more, 0
            continue
        yield buffer[position:end]
        position = end
        separator = next_char()
        if separator == "]":
            return
        if separator != ",":
            raise _NotAListOfObjects
        position += 1


def _columns_to_rows(dataset):
    """A JSON file holding one object of equal-length column lists ({"instruction": [...], ...}) is read as
    columns, not as one row. A single conversation ({"conversations": [{...}, ...]}) stays one row: its
    lists hold message objects only."""
    from datasets import Dataset

    row = dataset[0]
    values = list(row.values())
    if not values or not all(isinstance(v, list) for v in values):
        return dataset
    if len({len(v) for v in values}) != 1 or all(isinstance(x, dict) for v in values for x in v):
        return dataset
    return Dataset.from_dict(row)


def _read_modelscope(attr: DatasetAttr, model: ModelArgs, streaming: bool) -> Any:
    from modelscope import MsDataset
    from modelscope.utils.config_ds import MS_DATASETS_CACHE

    dataset = MsDataset.load(dataset_name=attr.dataset_name, subset_name=attr.subset, data_dir=attr.folder,
                             split=attr.split, cache_dir=model.cache_dir or MS_DATASETS_CACHE,
                             token=model.ms_hub_token, use_streaming=streaming)
    return dataset.to_hf_dataset() if isinstance(dataset, MsDataset) else dataset


def _hub_failure(attr: DatasetAttr, hub: str, error: Exception) -> str:
    facts = runtime()
    offline = [name for name, on in (("HF_HUB_OFFLINE", facts.hub_offline),
                                     ("HF_DATASETS_OFFLINE", facts.datasets_offline)) if on]
    state = f" ({' and '.join(v + '=1' for v in offline)} is set: no network access)" if offline else ""
    detail = f"{type(error).__name__}: {error}"
    if len(detail) > 300:
        detail = detail[:297] + "..."
    key = {"hf_hub": "hf_hub_url", "ms_hub": "ms_hub_url", "om_hub": "om_hub_url", "script": "script_url"}
    return (f"dataset '{attr.name}': could not load '{attr.dataset_name}' from the {hub}{state}: {detail}. "
            f"Download the dataset on a machine with network access, copy its files next to your data, then "
            f"set file_name to that file or folder in {attr.where} (and remove {key[attr.load_from]})")


def _first_json_row(file: Path) -> dict[str, Any] | None:
    decoder = json.JSONDecoder()
    size = 1 << 20
    while True:
        with open(file, encoding="utf-8-sig") as handle:  # as the datasets reader, accept a UTF-8 mark
            text = handle.read(size)
        whole = len(text) < size
        body = text.lstrip()
        try:
            if body.startswith("["):
                rest = body[1:].lstrip()
                return None if rest.startswith("]") else decoder.raw_decode(rest)[0]
            if not body:
                return None
            first, end = decoder.raw_decode(body)
            if body[end:].strip() or file.suffix.lower() == ".jsonl":
                return first  # JSON lines: the first line is the first row
            return _first_of_columns(first)
        except json.JSONDecodeError:
            if whole:
                raise
            size *= 4


def _first_of_columns(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict) and obj and all(isinstance(v, list) for v in obj.values()):
        lengths = {len(v) for v in obj.values()}
        if len(lengths) == 1 and 0 not in lengths and not all(isinstance(x, dict) for v in obj.values() for x in v):
            return {k: v[0] for k, v in obj.items()}
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object per row, found {type(obj).__name__}")
    return obj


def _first_csv_row(file: Path) -> dict[str, Any] | None:
    with open(file, encoding="utf-8", newline="") as handle:
        return next(csv.DictReader(handle), None)


def _first_parquet_row(file: Path) -> dict[str, Any] | None:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(file).iter_batches(batch_size=1):
        return batch.to_pylist()[0] if batch.num_rows else None
    return None


def _first_arrow_row(file: Path) -> dict[str, Any] | None:
    import pyarrow as pa

    with pa.memory_map(str(file)) as source:
        try:
            reader = pa.ipc.open_stream(source)
            batch = next(iter(reader), None)
        except pa.ArrowInvalid:
            source.seek(0)
            file_reader = pa.ipc.open_file(source)
            batch = file_reader.get_batch(0) if file_reader.num_record_batches else None
        return batch.slice(0, 1).to_pylist()[0] if batch is not None and batch.num_rows else None


def _first_text_row(file: Path) -> dict[str, Any] | None:
    with open(file, encoding="utf-8") as handle:
        line = handle.readline()
    return {"text": line.rstrip("\r\n")} if line else None


_FIRST_ROW = {"json": _first_json_row, "csv": _first_csv_row, "parquet": _first_parquet_row,
              "arrow": _first_arrow_row, "text": _first_text_row}
