"""The OpenAI-compatible HTTP API (`tuneforge api cfg.yaml`).

Modules: protocol (request bodies) · messages (OpenAI messages -> engine input) · media (image_url) ·
batcher (queued, batched generation) · app (FastAPI routes, SSE streams, errors) · errors (OpenAI error
JSON) · server (environment settings, uvicorn).
"""

from .app import create_app
from .server import ApiSettings, api_settings, build_app, run_api

__all__ = ["ApiSettings", "api_settings", "build_app", "create_app", "run_api"]
