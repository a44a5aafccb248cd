"""Helpers that build tiny local models and tokenizers (tests, demo, benchmarks). No downloads."""
