"""Padding-free batches: packed rows, per-row attention, preference rows as one row."""
