"""`tuneforge api cfg.yaml`: load the config's model and serve it over HTTP with uvicorn.

Environment (LLaMA-Factory's documented server settings, read once by `api_settings`): API_HOST (0.0.0.0),
API_PORT (8000), API_KEY (unset: no auth), API_MODEL_NAME (gpt-3.5-turbo), MAX_CONCURRENT (4: requests
generating together, batched; more wait), ALLOW_LOCAL_FILES (1: requests may name image files on this
machine; 0/false/no refuses them), SAFE_MEDIA_PATH (the only directory those files are read from; default:
the directory the server started in).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..config import Config

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiSettings:
    """How the API server runs, from its environment (see the module docstring for the names)."""

    host: str
    port: int
    api_key: str | None  # None: no authentication
    model_name: str  # the one model name clients must ask for
    max_concurrent: int  # requests admitted (and batched) at once
    allow_local_files: bool  # requests may name image files on this machine
    safe_media_path: str  # the resolved directory those image files must be inside


def api_settings(environ: Mapping[str, str] | None = None) -> ApiSettings:
    """The server settings from the environment (os.environ by default); ConfigError names a bad variable."""
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

    settings = ApiSettings(
        host=environ.get("API_HOST") or "0.0.0.0", port=number("API_PORT", 8000, 1, 65535),
        api_key=environ.get("API_KEY") or None, model_name=environ.get("API_MODEL_NAME") or "gpt-3.5-turbo",
        max_concurrent=number("MAX_CONCURRENT", 4, 1, 256),
        allow_local_files=environ.get("ALLOW_LOCAL_FILES", "1").lower() not in ("0", "false", "no"),
        safe_media_path=os.path.realpath(environ.get("SAFE_MEDIA_PATH") or os.getcwd()))
    if problems:
        raise ConfigError(problems, "environment")
    return settings


def build_app(cfg: Config, settings: ApiSettings) -> FastAPI:
    """The app for cfg: a chat engine (infer_backend), or a reward scorer for `stage: rm`."""
    from ..infer import RewardScorer, is_reward_model
    from .app import create_app

    if is_reward_model(cfg.method):
        return create_app(scorer=RewardScorer(cfg), settings=settings)
    from ..infer import create_engine

    return create_app(engine=create_engine(cfg), settings=settings)


def run_api(cfg: Config) -> int:
    import uvicorn

    from ..infer import check_backend
    from ..validate import validate_config

    settings = api_settings()
    validate_config(cfg)
    check_backend(cfg)
    app = build_app(cfg, settings)
    shown = "localhost" if settings.host in ("0.0.0.0", "::") else settings.host
    print(f"Serving {settings.model_name!r} at http://{shown}:{settings.port}/v1 "
          f"(API docs: http://{shown}:{settings.port}/docs)", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    return 0
