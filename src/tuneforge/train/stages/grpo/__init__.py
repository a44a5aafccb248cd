"""Stage grpo: online RL with verifiable rewards (GRPO, Dr. GRPO, DAPO, BNPO, GSPO); see recipe.py."""

from .recipe import run_grpo

__all__ = ["run_grpo"]
