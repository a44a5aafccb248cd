"""Optimizers the trainer builds itself: GaLore, APOLLO, LoRA+, BAdam, Muon, Adam-mini."""
