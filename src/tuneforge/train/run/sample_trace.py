"""`trace_samples: true` (or TUNEFORGE_TRACE_SAMPLES=1): each rank writes which samples it trained on, to check
data parallelism.

One JSON line per batch in output_dir/samples-rank<R>.jsonl: {"rank": R, "samples": [id, ...]}, where a
sample's id is a short hash of its input_ids (stable across runs and processes, independent of order).
Under DDP the ranks' files must hold different samples; with one process the same run lists them all.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...runtime import runtime

if TYPE_CHECKING:
    from ...config.groups import TrainArgs

Collator = Callable[[list[dict[str, Any]]], Any]


def sample_id(input_ids: Any) -> str:
    ids = input_ids.tolist() if hasattr(input_ids, "tolist") else list(input_ids)
    return hashlib.sha1(json.dumps(ids).encode()).hexdigest()[:12]


def trace_samples(collator: Collator, train: TrainArgs) -> Collator:
    """`collator`, logging each batch's sample ids first when `trace_samples` is set."""
    if not train.trace_samples:
        return collator
    output_dir = train.output_dir
    rank = runtime().rank
    path = os.path.join(output_dir, f"samples-rank{rank}.jsonl")

    def traced(features: list[dict[str, Any]]) -> Any:
        os.makedirs(output_dir, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"rank": rank, "samples": [sample_id(f["input_ids"]) for f in features]}) + "\n")
        return collator(features)

    return traced
