"""Package re-exports imported on first use, so `import tuneforge.<layer>` stays cheap (the web UI and the CLI
import packages whose modules pull in torch, transformers or datasets).

    __getattr__ = lazy_exports(__name__, {"load_model": "loader"})   # tuneforge.model.load_model
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], object]:
    """A module-level `__getattr__` for `package`: each name in `exports` comes from the submodule it maps to."""

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
