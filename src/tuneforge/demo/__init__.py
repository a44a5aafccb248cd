"""The bundled demo: `make demo` / `python -m tuneforge.demo`. Runs offline on CPU in minutes."""

from pathlib import Path

DEMO_DATA_DIR = Path(__file__).resolve().parent / "data"
