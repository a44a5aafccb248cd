"""PiSSA -> plain LoRA conversion at the end of training (`pissa_convert`), as LLaMA-Factory does it.

A PiSSA adapter only makes sense on top of the *residual* base weights (W - A0 B0) that its initialisation
left behind, which nobody else has. peft can rewrite it as a LoRA adapter of twice the rank for the
original base model, given the initial adapter (A0, B0): this callback saves that initial adapter when
training begins (output_dir/pissa_init) and writes the converted adapter when it ends
(output_dir/pissa_converted), which loads with plain peft on the original model.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

INIT_DIR = "pissa_init"
CONVERTED_DIR = "pissa_converted"


class PissaConvertCallback(TrainerCallback):
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        # A resumed run (global_step > 0: its weights are trained ones) keeps the adapter saved when the run
        # first began, the A0, B0 of its residual base; a fresh start replaces any earlier one.
        if not args.should_save or not _is_peft(model) or state.global_step > 0:
            return
        init_dir = os.path.join(args.output_dir, INIT_DIR)
        with _plain_lora_config(model):  # so that loading it back does not run a second SVD
            model.save_pretrained(init_dir)
        logger.info("Initial PiSSA adapter saved in %s", init_dir)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not args.should_save or not _is_peft(model):
            return
        init_dir = os.path.join(args.output_dir, INIT_DIR)
        converted_dir = os.path.join(args.output_dir, CONVERTED_DIR)
        if not os.path.isfile(os.path.join(init_dir, "adapter_config.json")):
            logger.warning("pissa_convert: no initial adapter in %s (the run was resumed from a checkpoint made "
                           "without pissa_convert); the PiSSA adapter is NOT converted", init_dir)
            return
        # peft loads the initial adapter beside the trained one ("default"), subtracts it and deletes it
        # again; the trained adapter is not touched.
        model.save_pretrained(converted_dir, path_initial_model_for_weight_conversion=init_dir)
        model.set_adapter("default")
        logger.info("PiSSA adapter converted to a plain LoRA adapter in %s", converted_dir)


def _is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config") and "default" in getattr(model, "peft_config", {})


@contextlib.contextmanager
def _plain_lora_config(model: Any) -> Iterator[None]:
    """Temporarily mark the adapter config as plain LoRA init (init_lora_weights: true)."""
    config = model.peft_config["default"]
    saved = config.init_lora_weights
    config.init_lora_weights = True
    try:
        yield
    finally:
        config.init_lora_weights = saved
