"""Stage ppo: PPO with our own loop (see recipe.py for why), a value-head policy and three reward sources."""

from .recipe import run_ppo

__all__ = ["run_ppo"]
