"""LLaMA-Factory 0.9.5 parity fixture for Gemma 3 on images (see image_rows.py for what the fixture holds),
including `image_do_pan_and_scan`: the demo images are blown up by `image_min_pixels` to 925x518 so that
Gemma 3's pan-and-scan cuts each into 2 crops (at their own 300x168 it makes none).

    /work/lfvenv/bin/python tools/lf_mm_fixtures/gemma3.py
"""

import sys

from image_rows import main

CASES = {
    "sft_gemma3": {"template": "gemma3", "cutoff_len": 1024},
    "sft_gemma3_cutoff_64": {"template": "gemma3", "cutoff_len": 64},
    "sft_gemma3_pan_and_scan": {"template": "gemma3", "cutoff_len": 1024, "image_do_pan_and_scan": True,
                                "image_min_pixels": 1200 * 400},
    "sft_gemma3_pan_and_scan_no_crops": {"template": "gemma3", "cutoff_len": 1024, "image_do_pan_and_scan": True},
}

if __name__ == "__main__":
    sys.exit(main("gemma3", CASES))
