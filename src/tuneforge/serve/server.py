"""`tuneforge api cfg.yaml`: load the config's model and serve it over HTTP with uvicorn.

Environment (LLaMA-Factory's names): API_HOST (0.0.0.0), API_PORT (8000), API_KEY (unset: no auth),
API_MODEL_NAME (gpt-3.5-turbo), MAX_CONCURRENT (4: requests generating together, batched; more wait).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..errors import ConfigError

logger = logging.getLogger(__name__)


def api_settings(environ: Any = None) -> dict[str, Any]:
    """The server settings from the environment; ConfigError names a bad variable."""
    environ = os.environ if environ is None else environ
    problems = []

    def number(name: str, default: int, low: int, high: int) -> int:
        raw = environ.get(name) or str(default)
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            problems.append(f"{name}={raw!r}: expected a whole number from {low} to {high}")
            return default
        return value

    settings = dict(host=environ.get("API_HOST") or "0.0.0.0", port=number("API_PORT", 8000, 1, 65535),
                    api_key=environ.get("API_KEY") or None,
                    model_name=environ.get("API_MODEL_NAME") or "gpt-3.5-turbo",
                    max_concurrent=number("MAX_CONCURRENT", 4, 1, 256))
    if problems:
        raise ConfigError(problems, "environment")
    return settings


def build_app(cfg: Any, settings: dict[str, Any]) -> Any:
    """The app for cfg: a chat engine (infer_backend), or a reward scorer for `stage: rm`."""
    from ..infer.scoring import RewardScorer, is_reward_model
    from .app import create_app

    options = dict(model_name=settings["model_name"], api_key=settings["api_key"],
                   max_concurrent=settings["max_concurrent"])
    if is_reward_model(cfg):
        return create_app(scorer=RewardScorer(cfg), **options)
    from ..infer.backends import create_engine

    return create_app(engine=create_engine(cfg), **options)


def run_api(cfg: Any) -> int:
    import uvicorn

    from ..infer.backends import check_backend

    settings = api_settings()
    check_backend(cfg)
    app = build_app(cfg, settings)
    shown = "localhost" if settings["host"] in ("0.0.0.0", "::") else settings["host"]
    print(f"Serving {settings['model_name']!r} at http://{shown}:{settings['port']}/v1 "
          f"(API docs: http://{shown}:{settings['port']}/docs)", flush=True)
    uvicorn.run(app, host=settings["host"], port=settings["port"], log_level="info")
    return 0
