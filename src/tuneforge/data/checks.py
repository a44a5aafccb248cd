"""Validation before training: column checks (stop the run) and row checks (skip and report the row).

Column checks (`check_columns`) run once per dataset on its column names: a column declared in
dataset_info.json but absent from the file, a stage the dataset cannot serve (preference data for SFT, no
KTO label for KTO, ...) stop the run with a DataError.

Row checks run inside the conversion map (`RowChecker`, batched): the format rules (formats/), then
- the stage's needs: an answer for sft (the rules of LLaMA-Factory's processors: an odd number of prompt
  messages and one non-empty response), chosen + rejected for rm/dpo, a labelled answer for kto;
- tools parse as JSON;
- every image/video/audio file exists (relative to media_dir; else as written), and when the dataset has a
  media column the number of <image>/<video>/<audio> placeholders equals the number of files;
- every local media file opens as what it claims to be: an image's header, a video container with a video
  stream, an audio file with at least one sample (headers only, so training starts fast). `tuneforge data
  check` (`decode_media`) decodes them fully: every image, a video's first frame, all of an audio's samples.
A failing row gets its field, reason and kind in three extra columns; `build_report` summarises them
(count, first 5 with file, row, field, reason) and the loader drops the rows.

Two kinds of problem: a row whose STRUCTURE is wrong (MalformedRow: a value of the wrong JSON type, tools
that are not JSON, messages that are not a list, a history entry that is not a pair) means the file was
made wrongly, and the loader stops the run with the first such row unless `skip_invalid_rows` is set; a
row whose CONTENT is unusable (an empty answer, a wrong role order, a missing media file) is skipped and
counted.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import DataError
from .formats import MEDIA_KINDS, InvalidRow, MalformedRow, convert_row

PROBLEM_FIELD = "_problem_field"
PROBLEM_REASON = "_problem_reason"
PROBLEM_MALFORMED = "_problem_malformed"  # True: the row's structure is wrong (MalformedRow)
SHOWN_PROBLEMS = 5
# The media placeholders in a row's text. IMAGE/VIDEO/AUDIO_PLACEHOLDER are LLaMA-Factory's documented data
# environment variables: read here only, once; the media plugins, the API server and the web UI import this.
PLACEHOLDERS = {
    "images": os.getenv("IMAGE_PLACEHOLDER", "<image>"),
    "videos": os.getenv("VIDEO_PLACEHOLDER", "<video>"),
    "audios": os.getenv("AUDIO_PLACEHOLDER", "<audio>"),
}
ALPACA_KEYS = ("prompt", "query", "response", "history")
SHARED_KEYS = ("system", "tools", "images", "videos", "audios", "chosen", "rejected", "kto_tag")
PREFERENCE_STAGES = ("rm", "dpo")


@dataclass
class RowProblem:
    file: str
    row: int  # 0-based index of the row in its file
    field: str
    reason: str
    malformed: bool = False

    def format(self) -> str:
        return f"{self.file} row {self.row}, field '{self.field}': {self.reason}"


@dataclass
class RowReport:
    """What validation found in one dataset."""

    dataset: str
    source: str
    total: int
    invalid: int = 0
    examples: list[RowProblem] = field(default_factory=list)
    by_field: dict[str, int] = field(default_factory=dict)
    split: str = "train"
    # Streaming: only the first `total` rows were checked up front; later bad rows are skipped silently.
    partial: bool = False
    malformed: int = 0  # invalid rows whose structure is wrong (skipped only with skip_invalid_rows)
    first_malformed: RowProblem | None = None

    @property
    def valid(self) -> int:
        return self.total - self.invalid

    def format(self) -> str:
        scope = f"first {self.total} rows checked (streaming)" if self.partial else f"{self.total} rows"
        head = f"dataset '{self.dataset}' ({self.split}, {self.source}): {scope}"
        if not self.invalid:
            return f"{head}, all valid"
        fields = ", ".join(f"{name}: {count}" for name, count in self.by_field.items())
        kinds = f", {self.malformed} of them malformed (skip_invalid_rows)" if self.malformed else ""
        lines = [f"{head}, {self.invalid} invalid and skipped{kinds} (by field: {fields})"]
        lines += [f"  {problem.format()}" for problem in self.examples]
        if self.invalid > len(self.examples):
            lines.append(f"  ... and {self.invalid - len(self.examples)} more")
        return "\n".join(lines)


def malformed_rows_error(report: RowReport, where: str) -> DataError:
    """The run stops on malformed rows (unless skip_invalid_rows): they mean the file was made wrongly."""
    first = report.first_malformed
    assert first is not None, "called for a report with malformed rows"
    count = "1 malformed row" if report.malformed == 1 else f"{report.malformed} malformed rows"
    scope = " among the first rows checked (streaming)" if report.partial else ""
    return DataError(f"dataset '{report.dataset}': {count}{scope}; the first is {first.format()}. A value of the "
                     "wrong type or a string that does not parse means the file was written wrongly: fix the "
                     f"file (or the columns/tags/formatting in {where}), or set skip_invalid_rows: true to skip "
                     "such rows and count them in the report")


def check_columns(attr, column_names: list[str], stage: str, needs_response: bool):
    """The attr to convert with: declared columns verified, defaults absent from the file unset.

    Raises a DataError when the data cannot serve `stage` at all."""
    available = set(column_names)
    where = f"dataset '{attr.name}' ({attr.source})"
    found = f"Its columns are: {', '.join(column_names) or 'none'}"
    keys = (ALPACA_KEYS if attr.formatting == "alpaca" else ("messages",)) + SHARED_KEYS
    columns = dataclasses.replace(attr.columns)
    for key in keys:
        column = getattr(columns, key)
        if not column or column in available:
            continue
        if key in attr.declared_columns:
            raise DataError(f"{where}: column '{column}' (columns.{key} in {attr.where}) is not in the data. "
                            f"{found}. Fix columns.{key} in {attr.where}")
        setattr(columns, key, None)  # an LLaMA-Factory default the file does not use (e.g. alpaca's "input")

    if attr.formatting == "alpaca" and not (columns.prompt or columns.query):
        raise DataError(f"{where}: {_no_column(attr.columns.prompt, 'prompt')}. {found}. Name the prompt "
                        f"column with columns.prompt in {attr.where}, or set formatting: sharegpt for conversations")
    if attr.formatting != "alpaca" and not columns.messages:
        raise DataError(f"{where}: {_no_column(attr.columns.messages, attr.formatting + ' messages')}. {found}. "
                        f"Name it with columns.messages in {attr.where}")
    _check_stage(attr, columns, stage, needs_response, where)
    return dataclasses.replace(attr, columns=columns)


def _check_stage(attr, columns, stage: str, needs_response: bool, where: str) -> None:
    if stage in PREFERENCE_STAGES and not attr.ranking:
        raise DataError(f"{where}: stage '{stage}' needs a preference dataset (ranking: true with chosen and "
                        f"rejected columns), but {attr.where} does not set ranking: true")
    if stage not in PREFERENCE_STAGES and attr.ranking:
        raise DataError(f"{where} is a preference dataset (ranking: true) and cannot be used with stage "
                        f"'{stage}'; use it with stage rm or dpo")
    if attr.ranking and not (columns.chosen and columns.rejected):
        raise DataError(f"{where}: ranking: true needs columns.chosen and columns.rejected in {attr.where}")
    if stage == "kto" and not columns.kto_tag:
        raise DataError(f"{where}: stage 'kto' needs a true/false label per row: set columns.kto_tag in "
                        f"{attr.where}")
    if stage == "sft" and needs_response and columns.kto_tag:
        raise DataError(f"{where} is a KTO dataset (columns.kto_tag is set), which stage 'sft' cannot train on; "
                        "use stage: kto, or remove kto_tag from its columns")
    if stage == "sft" and needs_response and attr.formatting == "alpaca" and not columns.response:
        raise DataError(f"{where}: stage 'sft' needs a response column: "
                        f"{_no_column(attr.columns.response, 'response')}. Set columns.response in {attr.where}")


def _no_column(name: str | None, role: str) -> str:
    return f"the data has no '{name}' column for the {role}" if name else f"no column is set for the {role}"


class RowChecker:
    """Picklable batched map function: raw rows -> canonical rows + problem columns."""

    def __init__(self, attr, stage: str, needs_response: bool, media_dir: str, check_files: bool,
                 decode_media: bool = False):
        self.attr = attr
        self.decode_media = decode_media  # data check: decode each media file, not only its header
        self.stage = stage
        self.needs_response = needs_response
        self.media_dir = media_dir
        self.check_files = check_files  # local data: media paths are files to find
        # Path datasets may keep media next to the data file.
        self.extra_dir = os.path.dirname(attr.path) if attr.path and attr.info_file is None else None

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        names = list(batch)
        size = len(batch[names[0]]) if names else 0
        out: dict[str, list] = {key: [] for key in ("prompt", "response", "system", "tools", *MEDIA_KINDS,
                                                     PROBLEM_FIELD, PROBLEM_REASON, PROBLEM_MALFORMED)}
        for i in range(size):
            row = {name: batch[name][i] for name in names}
            try:
                converted = self.check(row)
                problem = ("", "", False)
            except InvalidRow as invalid:
                converted = {"prompt": [], "response": [], "system": "", "tools": "",
                             **{kind: [] for kind in MEDIA_KINDS}}
                problem = (invalid.field, invalid.reason, isinstance(invalid, MalformedRow))
            for key, value in converted.items():
                out[key].append(value)
            out[PROBLEM_FIELD].append(problem[0])
            out[PROBLEM_REASON].append(problem[1])
            out[PROBLEM_MALFORMED].append(problem[2])
        return out

    def check(self, row: dict[str, Any]) -> dict[str, Any]:
        converted = convert_row(row, self.attr)
        self._check_stage(converted)
        self._check_tools(converted["tools"])
        for kind in MEDIA_KINDS:
            converted[kind] = self._media(kind, converted)
        return converted

    def _check_stage(self, row: dict[str, Any]) -> None:
        prompt, response, columns = row["prompt"], row["response"], self.attr.columns
        answer_field = columns.response if self.attr.formatting == "alpaca" else columns.messages
        if self.stage == "pt":
            if not prompt:
                raise InvalidRow(columns.prompt or columns.messages, "no text")
            return
        if len(prompt) % 2 != 1:
            raise InvalidRow(columns.messages or columns.prompt, "the prompt must end with a user message")
        if self.stage in PREFERENCE_STAGES:
            for column, answer in zip((columns.chosen, columns.rejected), response):
                if not answer["content"]:
                    raise InvalidRow(column, "the answer is empty")
        elif self.stage == "kto":
            if not any(answer["content"] for answer in response):
                raise InvalidRow(answer_field, "the answer is empty")
        elif self.stage == "sft" and self.needs_response:
            if len(response) != 1:
                raise InvalidRow(answer_field or "response", "the response is missing (null)")
            if not response[0]["content"]:
                what = "the response" if self.attr.formatting == "alpaca" else "the last message (the answer)"
                raise InvalidRow(answer_field, f"{what} is empty")

    def _check_tools(self, tools: str) -> None:
        if not tools:
            return
        try:
            json.loads(tools)
        except json.JSONDecodeError as error:
            raise MalformedRow(self.attr.columns.tools, f"tools is not valid JSON ({error.msg} at character "
                             f"{error.pos}); it must be a JSON list of function descriptions") from None

    def _media(self, kind: str, row: dict[str, Any]) -> list:
        column = getattr(self.attr.columns, kind)
        value = row[kind]
        if not column or value is None:
            items = []
        else:
            items = list(value) if isinstance(value, list) else [value]
        if self.check_files:
            items = [self._resolve_all(item, column, kind) for item in items]
            for item in items:
                problem = _media_problem(kind, item, self.decode_media)
                if problem:
                    raise InvalidRow(column, problem)
        if column:
            placeholder = PLACEHOLDERS[kind]
            count = sum(m["content"].count(placeholder) for m in row["prompt"])
            count += max((m["content"].count(placeholder) for m in row["response"]), default=0)
            if count != len(items):
                raise InvalidRow(column, f"{len(items)} {kind[:-1]}(s) but {count} {placeholder} placeholder(s) in "
                                 f"the messages: put one {placeholder} in the text where each {kind[:-1]} goes")
        return items

    def _resolve_all(self, item: Any, column: str, kind: str) -> Any:
        if isinstance(item, list):  # a video given as its frames
            return [self._resolve(frame, column, kind) for frame in item]
        return self._resolve(item, column, kind)

    def _resolve(self, item: Any, column: str, kind: str) -> Any:
        """LLaMA-Factory's rule: media_dir/path when that file exists, else the path as written."""
        if not isinstance(item, str) or "://" in item or item.startswith("data:"):
            return item
        # A video may also be a folder of its frames (data/media/video.py reads it).
        exists = os.path.exists if kind == "videos" else os.path.isfile
        joined = os.path.join(self.media_dir, item)
        if exists(joined):
            return joined
        if exists(item):
            return item
        if self.extra_dir and exists(os.path.join(self.extra_dir, item)):
            return os.path.join(self.extra_dir, item)
        raise InvalidRow(column, f"{kind[:-1]} file not found: '{item}' (looked in media_dir "
                         f"'{self.media_dir}' and the working directory); set media_dir to the folder the "
                         "paths are relative to")


# --- media files ---------------------------------------------------------------------------------------
# Small private probes: av (PyAV) and soundfile are the stack's video and audio decoders (the `media` extra).


def _media_problem(kind: str, item: Any, decode: bool) -> str | None:
    """Why a resolved local media item cannot be used (None when it can, or when it is not a local path)."""
    if isinstance(item, list):  # a video given as its frames
        return next((problem for frame in item if (problem := _image_problem(frame, decode))), None)
    if not isinstance(item, str) or "://" in item or item.startswith("data:"):
        return None
    if kind == "images":
        return _image_problem(item, decode)
    if kind == "videos":
        return _frames_problem(item, decode) if os.path.isdir(item) else _video_problem(item, decode)
    return _audio_problem(item, decode)


def _image_problem(path: Any, decode: bool) -> str | None:
    from PIL import Image

    if not isinstance(path, str):
        return None
    try:
        with Image.open(path) as image:
            if decode:
                image.load()
    except (OSError, ValueError, SyntaxError) as error:  # PIL reports broken files with all three
        return f"cannot decode image '{path}' ({error}); replace the file or remove the row"
    return None


def _frames_problem(folder: str, decode: bool) -> str | None:
    frames = sorted(os.listdir(folder))
    if not frames:
        return f"video folder '{folder}' holds no frames; put the frames' image files in it or remove the row"
    return next((problem for frame in frames if (problem := _image_problem(os.path.join(folder, frame), decode))),
                None)


def _video_problem(path: str, decode: bool) -> str | None:
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                return f"video '{path}' has no video stream; use a video file or remove the row"
            if decode and next(container.decode(video=0), None) is None:
                return f"video '{path}' holds no frames; replace the file or remove the row"
    except (av.error.FFmpegError, OSError, ValueError) as error:
        return f"cannot decode video '{path}' ({error}); replace the file or remove the row"
    return None


def _audio_problem(path: str, decode: bool) -> str | None:
    import soundfile

    try:
        info = soundfile.info(path)
        samples = len(soundfile.read(path, dtype="float32")[0]) if decode else info.frames
    except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
        return _av_audio_problem(path, decode, error)
    if samples == 0:
        return f"audio '{path}' has zero samples; replace the file or remove the row"
    return None


def _av_audio_problem(path: str, decode: bool, soundfile_error: Exception) -> str | None:
    """Formats libsndfile cannot read (m4a, aac, a video's sound track) go through PyAV."""
    import av

    try:
        with av.open(path) as container:
            if not container.streams.audio:
                return f"cannot decode audio '{path}' ({soundfile_error}); use an audio file or remove the row"
            if decode and sum(frame.samples for frame in container.decode(audio=0)) == 0:
                return f"audio '{path}' has zero samples; replace the file or remove the row"
    except (av.error.FFmpegError, OSError, ValueError) as error:
        return f"cannot decode audio '{path}' ({error}); replace the file or remove the row"
    return None
