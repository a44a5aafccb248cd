"""defer_deepspeed_import: accelerate's unwrap check no longer imports deepspeed, and answers as before once
deepspeed is loaded."""

from __future__ import annotations

import importlib.machinery
import sys
import types

import torch
from accelerate.utils import other

from tuneforge.train.deepspeed_import import defer_deepspeed_import


def test_unwrap_check_is_import_free_until_deepspeed_is_loaded(monkeypatch):
    installed = other.is_deepspeed_available
    monkeypatch.setattr(other, "is_deepspeed_available", installed)  # undone after the test
    defer_deepspeed_import()
    wrapped = other.is_deepspeed_available
    defer_deepspeed_import()  # idempotent (a trainer built earlier in this process may have wrapped it already)
    assert other.is_deepspeed_available is wrapped

    monkeypatch.delitem(sys.modules, "deepspeed", raising=False)
    assert other.is_deepspeed_available() is False
    model = torch.nn.Linear(2, 2)
    assert other.extract_model_from_parallel(model) is model
    assert "deepspeed" not in sys.modules

    loaded = types.ModuleType("deepspeed")
    loaded.__spec__ = importlib.machinery.ModuleSpec("deepspeed", None)
    monkeypatch.setitem(sys.modules, "deepspeed", loaded)  # once loaded, the answer is accelerate's own
    assert other.is_deepspeed_available() is installed() is True
