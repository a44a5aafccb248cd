"""The web UI (`tuneforge webui`): a Gradio app whose forms are generated from the parameter declarations
and which runs training, evaluation and export as CLI subprocesses that outlive the browser.

Importing this package is cheap; gradio is imported by `launch` / `build_app`.
"""

from __future__ import annotations

import os
from typing import Any

# Nothing leaves the machine unless asked: no usage analytics (set before gradio is first imported).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def launch(host: str | None = None, port: int | None = None, share: bool = False, output_root: str = "saves",
           **security: Any) -> None:
    """`security`: auth, auth_file, insecure_no_auth, allowed_roots, allowed_keys (app.launch)."""
    from .app import launch as _launch

    _launch(host, port, share, output_root, **security)
