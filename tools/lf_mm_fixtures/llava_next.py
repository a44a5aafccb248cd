"""LLaMA-Factory 0.9.5 parity fixture for the llava_next family on images (see image_rows.py for what it holds).

    /work/lfvenv/bin/python tools/lf_mm_fixtures/llava_next.py
"""

import sys

from image_rows import main

CASES = {
    "sft_llava_next": {"template": "llava_next", "cutoff_len": 1024},
    "sft_llava_next_cutoff_64": {"template": "llava_next", "cutoff_len": 64},
    "sft_llava_next_max_pixels": {"template": "llava_next", "cutoff_len": 1024, "image_max_pixels": 120 * 80},
}

if __name__ == "__main__":
    sys.exit(main("llava_next", CASES))
