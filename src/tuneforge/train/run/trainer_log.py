"""The run's `trainer_log.jsonl`: its name and a reader. Kept free of heavy imports (no transformers), so the
web UI can follow a run's progress without loading the training stack."""

from __future__ import annotations

import json
import os
from typing import Any

TRAINER_LOG = "trainer_log.jsonl"


def read_trainer_log(output_dir: str) -> list[dict[str, Any]]:
    """All records of a run's trainer_log.jsonl (empty when the run has not logged yet). A line that does not
    parse (being written right now, or torn by a crash) is skipped."""
    records = []
    try:
        with open(os.path.join(output_dir, TRAINER_LOG), encoding="utf-8") as handle:
            for line in handle:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    except OSError:
        pass
    return records
