"""LLaMA-Factory 0.9.5 parity fixture for the pixtral plugin (Mistral-3 / Pixtral) on images, with both of its
templates, `pixtral` and `mistral_small` (see image_rows.py for what the fixture holds).

    /work/lfvenv/bin/python tools/lf_mm_fixtures/pixtral.py
"""

import sys

from image_rows import main

CASES = {
    "sft_pixtral": {"template": "pixtral", "cutoff_len": 1024},
    "sft_mistral_small": {"template": "mistral_small", "cutoff_len": 1024},
    "sft_pixtral_cutoff_64": {"template": "pixtral", "cutoff_len": 64},
    "sft_pixtral_max_pixels": {"template": "pixtral", "cutoff_len": 1024, "image_max_pixels": 120 * 80},
}

if __name__ == "__main__":
    sys.exit(main("pixtral", CASES))
