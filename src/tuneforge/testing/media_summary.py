"""A comparable, compact record of the media inputs a batch gives a model (for parity fixtures and tests).

Float tensors (pixel values) become shape + dtype + float64 sums + a SHA-256 of their float32 bytes, so a
fixture stays small and a test can say both "identical" and, when not, how far apart. Integer tensors and
lists (image sizes, token type ids, grid sizes) are kept as nested lists. Only stdlib, numpy and torch are
used: the fixture scripts run this under LLaMA-Factory's own interpreter too.
"""

from __future__ import annotations

import hashlib
from typing import Any


def summarize(value: Any) -> Any:
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if np.issubdtype(value.dtype, np.floating):
            data = value.astype(np.float32)
            return {"shape": list(data.shape), "sum": float(data.astype(np.float64).sum()),
                    "abs_sum": float(np.abs(data.astype(np.float64)).sum()),
                    "sha256": hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()}
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [summarize(item) for item in value]
    return value


def summarize_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """Every entry of a model-input mapping, summarized."""
    return {name: summarize(value) for name, value in sorted(inputs.items())}
