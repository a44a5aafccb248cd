"""The OpenAI-compatible HTTP API (`tuneforge api cfg.yaml`).

Modules: protocol (request bodies) · messages (OpenAI messages -> engine input) · media (image_url, size
caps) · remote (image URLs fetched from a checked, pinned address) · limits (surrogates, message count,
context length) · body_limit (413 for big bodies) · batcher (queued, batched generation) · app (FastAPI
routes, SSE streams, disconnects, errors) · errors (OpenAI error JSON) · server (environment settings,
binding, uvicorn). Settings and security decisions: docs/api.md.
"""

from .app import create_app
from .server import ApiSettings, api_settings, build_app, run_api

__all__ = ["ApiSettings", "api_settings", "build_app", "create_app", "run_api"]
