"""Inference: the generation engine behind `tuneforge chat`, the API, the web UI and evaluation.

    from tuneforge.infer import ChatEngine
    engine = ChatEngine(cfg)      # cfg: a tuneforge.config.Config (make_config / load_config)
    engine.chat([{"role": "user", "content": "Hi"}], max_new_tokens=32)

Modules: engine (ChatEngine: prompt building, generate, streaming) · generation (the generation
arguments and LLaMA-Factory's rules for combining them).
"""

from ..config.generation import generation_settings, resolve_generation
from .backends import check_backend, create_engine
from .engine import ChatEngine, Response, check_messages, load_for_inference
from .scoring import RewardScorer, is_reward_model

__all__ = ["ChatEngine", "Response", "RewardScorer", "check_backend", "check_messages", "create_engine",
           "generation_settings", "is_reward_model", "load_for_inference", "resolve_generation"]
