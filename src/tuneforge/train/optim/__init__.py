"""Optimizers the trainer builds itself: GaLore, APOLLO, LoRA+, BAdam."""
