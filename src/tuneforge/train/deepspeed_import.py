"""Import DeepSpeed only when a run uses it.

accelerate's `extract_model_from_parallel` (called by every Trainer for `unwrap_model`) imports deepspeed
whenever the package is installed, only to add `DeepSpeedEngine` to the wrapper classes it unwraps. That
import drags in mlflow and DeepSpeed's autotuner: ~2.5 CPU s of every `tuneforge train` start-up on this
machine, for runs that never touch DeepSpeed. No object can be a DeepSpeedEngine before the deepspeed module
is imported, so asking "is deepspeed available" as "is it installed AND already imported" unwraps exactly
the same models. A DeepSpeed run imports deepspeed (transformers' integration) before any unwrap.
"""

from __future__ import annotations

import sys


def defer_deepspeed_import() -> None:
    """Make accelerate's unwrap check import-free while deepspeed is not loaded (idempotent)."""
    from accelerate.utils import other

    installed = other.is_deepspeed_available
    if getattr(installed, "tuneforge_deferred", False):
        return

    def loaded_and_installed() -> bool:
        return "deepspeed" in sys.modules and installed()

    loaded_and_installed.tuneforge_deferred = True  # type: ignore[attr-defined]
    other.is_deepspeed_available = loaded_and_installed
