"""One recipe per training stage: pt, sft, rm, dpo, kto and ppo (its own loop)."""
