"""The real-model demo's training data: LLaMA-Factory's identity.json with `{{name}}`/`{{author}}` filled in,
mixed with short general instructions so the model keeps what it knew.

Both files ship in demo/data (from LLaMA-Factory's data/, Apache-2.0): identity.json unchanged, and
general_en.json, the alpaca_en_demo rows with a short answer and no input, without rows that mention the
demo's test questions (France, Paris, spiders, planets, oceans, capitals, the model's name), so the
"still knows Paris" check after training is not answered by the training data.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from . import DEMO_DATA_DIR

# SmolLM2 is an English model: identity.json's Chinese rows cost ~4x the tokens and teach it nothing it is asked.
_ENGLISH = re.compile(r"^[\x00-\x7f]*$")


@dataclass(frozen=True)
class DemoMix:
    identity_rows: int
    general_rows: int
    dataset: str  # the `dataset:` value naming both files
    dataset_dir: str


def write_identity_mix(folder: Path, name: str, author: str, general_rows: int) -> DemoMix:
    """Writes identity.json (filled in, English rows), general.json (the first `general_rows` general rows) and
    their dataset_info.json into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    identity = [
        {**row, "output": row["output"].replace("{{name}}", name).replace("{{author}}", author)}
        for row in _load("identity.json") if _ENGLISH.match(row["instruction"] + row["output"])
    ]
    general = _load("general_en.json")[:general_rows]
    _dump(folder / "identity.json", identity)
    _dump(folder / "general.json", general)
    info = {"identity": {"file_name": "identity.json"}, "general": {"file_name": "general.json"}}
    _dump(folder / "dataset_info.json", info)
    return DemoMix(len(identity), len(general), "identity,general", str(folder))


def _load(file_name: str) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = json.loads((DEMO_DATA_DIR / file_name).read_text(encoding="utf-8"))
    return rows


def _dump(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8")
