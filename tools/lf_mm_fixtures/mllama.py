"""Regenerate tests/fixtures/mm/mllama_image.json: LLaMA-Factory 0.9.5's tokenized `mllm_demo` for Llama-3.2-Vision.

    .venv/bin/python -m tuneforge.testing.tiny_vl_mllama /tmp/tiny_mllama
    /work/lfvenv/bin/python tools/lf_mm_fixtures/mllama.py --model-dir /tmp/tiny_mllama

Same procedure as intern_vl.py (LLaMA-Factory's own load_tokenizer, template, get_dataset and get_mm_inputs), with
no patch: transformers 4.57 loads MllamaProcessor without torchvision. The batch of all rows records the
cross_attention_mask LLaMA-Factory builds per batch (each <|image|> attends from its position to the next image
or the end of the longest row).
"""

from __future__ import annotations

from intern_vl import main

CASES = {
    "default": dict(template="mllama", cutoff_len=1024),
    "small_images": dict(template="mllama", cutoff_len=1024, image_max_pixels=50 * 50),
    "cut": dict(template="mllama", cutoff_len=60),
}

if __name__ == "__main__":
    main("mllama", CASES)
