"""Multiple-choice benchmark files in their public layouts, read from disk (a folder, or the task's .zip).

    load_task(task_dir, "mmlu_test") -> Task(name, split, subjects={subject: Subject(...)})

`task` is `<folder>_<split>` as in LLaMA-Factory (mmlu_test, cmmlu_test, ceval_validation); the split is one
of test, validation, train (train = the few-shot "dev" questions). The folder `<task_dir>/<folder>` holds
`mapping.json` ({subject: {"name": ..., "category": ...}}) and one CSV per subject and split, found in
any of the layouts the public sets use:
    MMLU     data/<dir>/<subject>_<dir>.csv    no header: question, A, B, C, D, answer
    C-Eval   <dir>/<subject>_<dir>.csv         header: id, question, A, B, C, D, answer[, explanation]
    CMMLU    <dir>/<subject>.csv               header: (index), Question, A, B, C, D, Answer
where <dir> is test, val or dev. The files may also sit inside `<folder>/<folder>.zip`, as LLaMA-Factory
ships them. A task missing from task_dir but bundled with tuneforge (evaluate/samples/) is read from there.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, DataError

CHOICES = ("A", "B", "C", "D")
SPLIT_DIRS = {"test": "test", "validation": "val", "train": "dev"}
SAMPLES_DIR = Path(__file__).resolve().parent / "samples"


@dataclass
class Question:
    question: str
    options: dict[str, str]  # letter -> text
    answer: str


@dataclass
class Subject:
    name: str  # readable name used in the prompt
    category: str
    questions: list[Question] = field(default_factory=list)  # the evaluated split
    shots: list[Question] = field(default_factory=list)  # the few-shot (dev) questions


@dataclass
class Task:
    name: str
    split: str
    subjects: dict[str, Subject]


def split_task_name(task: str) -> tuple[str, str]:
    folder, _, split = task.rpartition("_")
    if not folder or split not in SPLIT_DIRS:
        raise ConfigError(f"task: {task!r} should be <benchmark>_<split> with split one of "
                          f"{', '.join(SPLIT_DIRS)} (e.g. mmlu_test, ceval_validation)")
    return folder, split


def task_folder(task_dir: str, folder: str) -> Path:
    path = Path(task_dir).expanduser() / folder
    if path.is_dir():
        return path
    if (SAMPLES_DIR / folder).is_dir():
        return SAMPLES_DIR / folder
    available = sorted(p.name for p in Path(task_dir).expanduser().iterdir() if p.is_dir()) \
        if Path(task_dir).expanduser().is_dir() else []
    raise ConfigError(f"task_dir: {path} does not exist (task folders found in {task_dir!r}: "
                      f"{', '.join(available) or 'none'}). Put the benchmark there in its public layout, or try "
                      "the bundled sample with task: mmlu_sample_test")


class _Files:
    """Relative paths -> text, from a folder or from the zip inside it."""

    def __init__(self, root: Path):
        self.root = root
        self.zip_names: dict[str, str] = {}
        archive = root / f"{root.name}.zip"
        self.archive = zipfile.ZipFile(archive) if archive.is_file() else None
        if self.archive is not None:
            for name in self.archive.namelist():
                parts = name.split("/")
                for start in range(len(parts)):  # a member may sit under a top-level folder
                    self.zip_names.setdefault("/".join(parts[start:]), name)

    def read(self, relative: str) -> str | None:
        path = self.root / relative
        if path.is_file():
            return path.read_text(encoding="utf-8-sig")
        if relative in self.zip_names and self.archive is not None:
            return self.archive.read(self.zip_names[relative]).decode("utf-8-sig")
        return None

    def where(self) -> str:
        return f"{self.root}" + (f" (and {self.archive.filename})" if self.archive else "")


def _candidates(subject: str, split_dir: str) -> list[str]:
    return [f"data/{split_dir}/{subject}_{split_dir}.csv", f"{split_dir}/{subject}_{split_dir}.csv",
            f"{split_dir}/{subject}.csv"]


def parse_csv(text: str, source: str) -> list[Question]:
    """Rows with or without a header; a header is recognised by its question and answer columns."""
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    if "question" in header and "answer" in header:
        index = {name: header.index(name) for name in ("question", "answer")}
        index.update({letter: header.index(letter.lower()) for letter in CHOICES if letter.lower() in header})
        body, first_line = rows[1:], 2
    else:
        index = {"question": 0, **{letter: i + 1 for i, letter in enumerate(CHOICES)}, "answer": 5}
        body, first_line = rows, 1
    questions = []
    for line, row in enumerate(body, start=first_line):
        try:
            options = {letter: row[index[letter]] for letter in CHOICES if letter in index}
            answer = row[index["answer"]].strip().upper()
            question = row[index["question"]]
        except IndexError:
            raise DataError(f"{source}, line {line}: expected columns question, A, B, C, D, answer; got "
                            f"{len(row)} column(s)") from None
        if answer and answer not in options:
            raise DataError(f"{source}, line {line}: answer {answer!r} is not one of {', '.join(options)}")
        questions.append(Question(question=question, options=options, answer=answer))
    return questions


def _read_split(files: _Files, subject: str, split: str) -> list[Question]:
    split_dir = SPLIT_DIRS[split]
    for relative in _candidates(subject, split_dir):
        text = files.read(relative)
        if text is not None:
            return parse_csv(text, f"{files.root / relative}")
    raise DataError(f"task: no {split} file for subject {subject!r} in {files.where()}; looked for "
                    f"{', '.join(_candidates(subject, split_dir))}")


def load_task(task_dir: str, task: str) -> Task:
    folder, split = split_task_name(task)
    root = task_folder(task_dir, folder)
    files = _Files(root)
    mapping_text = files.read("mapping.json")
    if mapping_text is None:
        raise DataError(f"task: {root} has no mapping.json ({{subject: {{\"name\": ..., \"category\": ...}}}})")
    try:
        mapping = json.loads(mapping_text)
    except json.JSONDecodeError as error:
        raise DataError(f"task: {root / 'mapping.json'} is not valid JSON ({error})") from None
    subjects = {}
    for key, info in mapping.items():
        subject = Subject(name=info.get("name", key), category=info.get("category", "Other"))
        subject.questions = _read_split(files, key, split)
        subject.shots = _read_split(files, key, "train") if split != "train" else []
        unanswered = sum(1 for q in subject.questions if not q.answer)
        if unanswered:
            raise DataError(f"task: {unanswered} question(s) of subject {key!r} ({split}) have no answer; this "
                            "split has no public answer key, evaluate another split (e.g. _validation)")
        subjects[key] = subject
    return Task(name=folder, split=split, subjects=subjects)
