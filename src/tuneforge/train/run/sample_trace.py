"""`TUNEFORGE_TRACE_SAMPLES=1`: each rank writes which samples it trained on, to check data parallelism.

One JSON line per batch in output_dir/samples-rank<R>.jsonl: {"rank": R, "samples": [id, ...]}, where a
sample's id is a short hash of its input_ids (stable across runs and processes, independent of order).
Under DDP the ranks' files must hold different samples; with one process the same run lists them all.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

TRACE_ENV = "TUNEFORGE_TRACE_SAMPLES"


def sample_id(input_ids: Any) -> str:
    ids = input_ids.tolist() if hasattr(input_ids, "tolist") else list(input_ids)
    return hashlib.sha1(json.dumps(ids).encode()).hexdigest()[:12]


def trace_samples(collator: Any, output_dir: str) -> Any:
    """`collator`, logging each batch's sample ids first when TUNEFORGE_TRACE_SAMPLES=1."""
    if os.environ.get(TRACE_ENV) != "1":
        return collator
    rank = int(os.environ.get("RANK", "0"))
    path = os.path.join(output_dir, f"samples-rank{rank}.jsonl")

    def traced(features: list[dict[str, Any]]) -> Any:
        os.makedirs(output_dir, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"rank": rank, "samples": [sample_id(f["input_ids"]) for f in features]}) + "\n")
        return collator(features)

    return traced
