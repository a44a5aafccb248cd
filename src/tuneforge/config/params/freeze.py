"""Freeze (partial-parameter) fine-tuning: which layers and modules stay trainable."""

from typing import Any

from ..schema import declare

G = "freeze"
LATER: dict[str, Any] = {"implemented": False}

declare("freeze_trainable_layers", "int", 2, "Trainable hidden layers: +N = the last N, -N = the first N.",
        G)
declare("freeze_trainable_modules", "list", "all", "Modules inside those layers that are trained "
        "(comma-separated names, or `all`).", G)
declare("freeze_extra_modules", "list", None, "Modules outside the hidden layers that are also trained "
        "(comma-separated, e.g. embed_tokens,lm_head).", G)
