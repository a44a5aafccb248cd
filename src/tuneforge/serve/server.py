"""`tuneforge api cfg.yaml`: load the config's model and serve it over HTTP with uvicorn.

Environment (LLaMA-Factory's server settings, read once by `api_settings`, plus tuneforge's limits):
  API_HOST (127.0.0.1)    the address to listen on; API_HOST=0.0.0.0 serves other machines
  API_PORT (8000), API_KEY (unset: no auth), API_MODEL_NAME (gpt-3.5-turbo)
  MAX_CONCURRENT (4)      requests generating together, batched; more wait in line
  ALLOW_LOCAL_FILES (0)   1: requests may name image files on this machine, inside SAFE_MEDIA_PATH
  SAFE_MEDIA_PATH (the directory the server started in)
  ALLOW_REMOTE_URLS (1)   0: refuse http(s) image URLs (data URLs only)
  ALLOW_PRIVATE_URLS (0)  1: image URLs may point to loopback / private / link-local addresses
  API_MAX_BODY_MB (50), API_MAX_MESSAGES (2048), API_MAX_IMAGE_MB (20: one image's file),
  API_MAX_IMAGE_PIXELS (50000000: one request's images together, read from their headers before decoding)

Why loopback by default (LLaMA-Factory binds 0.0.0.0): without API_KEY the server answers anyone who can
reach it, and it can fetch URLs on its network's behalf; that should be a choice (API_HOST), never the
default. A server exposed without API_KEY starts with a loud warning. Local image files are off by default
for the same reason: a request could read any image-looking file under the directory the server started in.
"""

from __future__ import annotations

import ipaddress
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
MB = 1024 * 1024


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
    allow_remote_urls: bool = True  # requests may name http(s) image URLs
    allow_private_urls: bool = False  # ... also on loopback / private / link-local addresses
    max_body_bytes: int = 50 * MB
    max_messages: int = 2048  # OpenAI's limit
    max_image_bytes: int = 20 * MB  # one image file
    max_image_pixels: int = 50_000_000  # one request's images together

    @property
    def exposed(self) -> bool:
        """Listening beyond this machine (any address but loopback)."""
        return not _is_loopback(self.host)


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

    def switch(name: str, default: bool) -> bool:
        raw = (environ.get(name) or "").strip().lower()
        if not raw:
            return default
        if raw not in SWITCH_VALUES:
            problems.append(f"{name}={environ[name]!r}: expected 1 or 0 (true/false, yes/no)")
            return default
        return SWITCH_VALUES[raw]

    settings = ApiSettings(
        host=environ.get("API_HOST") or "127.0.0.1", port=number("API_PORT", 8000, 1, 65535),
        api_key=environ.get("API_KEY") or None, model_name=environ.get("API_MODEL_NAME") or "gpt-3.5-turbo",
        max_concurrent=number("MAX_CONCURRENT", 4, 1, 256),
        allow_local_files=switch("ALLOW_LOCAL_FILES", False),
        safe_media_path=os.path.realpath(environ.get("SAFE_MEDIA_PATH") or os.getcwd()),
        allow_remote_urls=switch("ALLOW_REMOTE_URLS", True), allow_private_urls=switch("ALLOW_PRIVATE_URLS", False),
        max_body_bytes=number("API_MAX_BODY_MB", 50, 1, 4096) * MB,
        max_messages=number("API_MAX_MESSAGES", 2048, 1, 1_000_000),
        max_image_bytes=number("API_MAX_IMAGE_MB", 20, 1, 1024) * MB,
        max_image_pixels=number("API_MAX_IMAGE_PIXELS", 50_000_000, 1, 2**31 - 1))
    if problems:
        raise ConfigError(problems, "environment")
    return settings


SWITCH_VALUES = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False,
                 "off": False}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: whatever it resolves to, it is not known to stay on this machine


def banner(settings: ApiSettings) -> str:
    """What `tuneforge api` prints before it starts: the address it really listens on, and a warning
    when that is beyond this machine without an API key."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    lines = [f"Serving {settings.model_name!r} at http://{host}:{settings.port}/v1 "
             f"(API docs: http://{host}:{settings.port}/docs)"]
    if settings.host in ("0.0.0.0", "::"):
        lines.append(f"Listening on every network interface of this machine ({settings.host}).")
    if settings.exposed and not settings.api_key:
        lines.append(f"WARNING: API_HOST={settings.host} serves other machines and API_KEY is not set: anyone who can "
                     "reach this port can use the model. Set API_KEY=<secret> (clients send it as a Bearer "
                     "token), or leave API_HOST unset to serve this machine only (127.0.0.1).")
    return "\n".join(lines)


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
    message = banner(settings)
    print(message, flush=True)
    if "WARNING" in message:
        logger.warning("the API is exposed on %s without API_KEY", settings.host)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    return 0
