"""LLaMA-Factory 0.9.5 parity fixture for Gemma 3 on images (see image_rows.py for what the fixture holds).

`image_do_pan_and_scan` is not here: LLaMA-Factory 0.9.5 cannot run it with transformers 4.57.1 (its
Gemma3Plugin indexes `num_crops[0][i]`, but 4.57 returns num_crops as a 1-D tensor: "IndexError: invalid
index of a 0-dim tensor"). tests/data/media/test_gemma3.py checks pan-and-scan against transformers'
own Gemma3Processor instead.

    /work/lfvenv/bin/python tools/lf_mm_fixtures/gemma3.py
"""

import sys

from image_rows import main

CASES = {
    "sft_gemma3": {"template": "gemma3", "cutoff_len": 1024},
    "sft_gemma3_cutoff_64": {"template": "gemma3", "cutoff_len": 64},
    "sft_gemma3_max_pixels": {"template": "gemma3", "cutoff_len": 1024, "image_max_pixels": 120 * 80},
}

if __name__ == "__main__":
    sys.exit(main("gemma3", CASES))
