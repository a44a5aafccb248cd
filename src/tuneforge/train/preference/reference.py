"""The frozen reference model of dpo / kto / ppo (LLaMA-Factory 0.9.5 rules).

- `ref_model` set: that model (plus `ref_model_adapters`, merged; quantized with `ref_model_quantization_bit`),
  loaded frozen in eval mode.
- LoRA without `ref_model`: no second model. The reference is the policy with its adapter switched off
  (`reference_forward` uses peft's `disable_adapter()`), so no parameter is held twice.
- full / freeze without `ref_model`: a frozen copy of the starting model (its weights change as the
  policy trains, so a copy is the only way to keep the start).
- orpo / simpo: no reference at all.
"""

from __future__ import annotations

import contextlib
import logging
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ...config import Config
    from ...config.groups import MethodArgs, RlhfArgs

logger = logging.getLogger(__name__)


def adapter_paths(paths: str | None) -> list[str]:
    """The comma-separated adapter folders of `ref_model_adapters` / `reward_model_adapters`, in order."""
    return [path.strip() for path in (paths or "").split(",") if path.strip()]


def needs_reference(method: MethodArgs, rlhf: RlhfArgs) -> bool:
    from .losses import REFERENCE_FREE_LOSSES

    return not (method.stage == "dpo" and rlhf.pref_loss in REFERENCE_FREE_LOSSES)


def load_reference_model(cfg: Config, tokenizer: Any) -> torch.nn.Module | None:
    """The separate reference model, or None where none is needed or the adapter-off policy serves."""
    from ...model.loader import load_model

    rlhf = cfg.rlhf
    if not needs_reference(cfg.method, rlhf):
        return None
    if rlhf.ref_model is None and cfg.method.finetuning_type == "lora":
        logger.info("Reference model: the policy with its LoRA adapter disabled (no second copy)")
        return None
    adapters = adapter_paths(rlhf.ref_model_adapters)
    ref_cfg = cfg.replace(
        model_name_or_path=rlhf.ref_model or cfg.model.model_name_or_path,
        adapter_name_or_path=adapters or None,
        # Adapters of the reference are merged into it (setup_lora with is_trainable=False).
        finetuning_type="lora" if adapters else "full",
        # The reference is quantized by its own key only (the policy's quantization_bit is for QLoRA training).
        quantization_bit=rlhf.ref_model_quantization_bit,
        print_param_status=False,
    )
    model = zero3_engine(load_model(ref_cfg, tokenizer, is_trainable=False))
    logger.info("Reference model: %s%s", ref_cfg.model.model_name_or_path,
                f" + adapters {','.join(adapters)}" if adapters else "")
    return model


def zero3_engine(model: torch.nn.Module) -> torch.nn.Module:
    """Under ZeRO-3 the frozen reference loaded partitioned (zero.Init), and only a DeepSpeed engine gathers
    its weights for a forward pass; accelerate prepares no engine for a model without an optimizer, so we
    start one here (no optimizer, the run's ZeRO-3 settings). Any other run: the model unchanged."""
    from transformers.integrations.deepspeed import deepspeed_config, is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled():
        return model
    import deepspeed

    config = {key: value for key, value in (deepspeed_config() or {}).items()
              if key not in ("optimizer", "scheduler")}  # a frozen model: nothing to step
    engine, *_ = deepspeed.initialize(model=model, config=config)
    engine.eval()
    return engine


def reference_context(policy: Any, ref_model: torch.nn.Module | None
                      ) -> tuple[torch.nn.Module, AbstractContextManager[Any]]:
    """(model to run, context to run it in) for a reference forward pass; `policy` is the (peft) model trained."""
    if ref_model is not None:
        return ref_model, contextlib.nullcontext()
    return policy, policy.disable_adapter()
