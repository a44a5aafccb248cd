"""LLaMA-Factory 0.9.5 parity fixture for the llava family on images (see image_rows.py for what it holds).

    /work/lfvenv/bin/python tools/lf_mm_fixtures/llava.py
"""

import sys

from image_rows import main

CASES = {
    "sft_llava": {"template": "llava", "cutoff_len": 1024},
    "sft_llava_cutoff_64": {"template": "llava", "cutoff_len": 64},
    "sft_llava_max_pixels": {"template": "llava", "cutoff_len": 1024, "image_max_pixels": 120 * 80},
}

if __name__ == "__main__":
    sys.exit(main("llava", CASES))
