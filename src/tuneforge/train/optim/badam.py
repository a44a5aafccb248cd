"""BAdam (block-coordinate Adam) through the badam package, set up as LLaMA-Factory 0.9.5 does.

- badam_mode layer: badam.BlockOptimizer wraps the HF `optim` optimizer and trains one transformer layer
  at a time (fp32 master copies of that layer only), moving to the next layer every badam_switch_interval
  steps in badam_switch_mode order. Embeddings, final norm and output layer are not trained (as LF).
- badam_mode ratio: badam.BlockOptimizerRatio, a sparse Adam that updates a badam_update_ratio share of the
  entries of every weight (embedding and output layer frozen).

Where we differ from LF's use of the package, and why:
- only trainable parameters are handed to BAdam, so freeze + BAdam cycles over the freeze-trainable layers
  instead of switching frozen layers on;
- the base optimizer gets weight_decay explicitly: badam builds each block's param groups from the base
  optimizer's defaults, and torch AdamW's default (0.01) would otherwise replace `weight_decay`;
- every block trains badam_switch_interval steps (badam 1.4 gives the first one a step fewer), and -1 really
  never switches (badam 1.4 tests `(step + 1) % -1 == 0`, true at every step);
- badam_verbose 0 is silent (badam 1.4 prints every switch whatever the verbosity), and a switch skips
  badam's gc.collect() (see LayerBlockOptimizer.switch_trainable_params);
- the active layer and step count travel in the optimizer state, so a resumed run trains the same layer.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
from collections import defaultdict
from types import MethodType
from typing import TYPE_CHECKING, Any

import torch
from badam import BlockOptimizer, BlockOptimizerRatio, clip_grad_norm_old_version
from transformers import Trainer

from ...errors import ConfigError
from .optimizers import base_optimizer_kwargs, decay_parameter_names

if TYPE_CHECKING:
    from transformers import TrainingArguments

    from ...config.groups import BadamArgs

logger = logging.getLogger(__name__)

NEVER = sys.maxsize
LAYER_PREFIX = re.compile(r".*\blayers\.\d+\.")


def create_badam_optimizer(model: Any, args: TrainingArguments, badam: BadamArgs) -> torch.optim.Optimizer:
    named = [(name, param) for name, param in model.named_parameters() if param.requires_grad]
    decay_names = decay_parameter_names(model)
    decay = [param for name, param in named if name in decay_names]
    no_decay = [param for name, param in named if name not in decay_names]
    # Backward needs to reach only the active block: no input-grad hook on the embedding output.
    if hasattr(model, "_require_grads_hook"):
        model.disable_input_require_grads()
    if badam.badam_mode == "ratio":
        return _ratio_optimizer(named, decay, no_decay, args, badam)

    optimizer_class, _ = Trainer.get_optimizer_cls_and_kwargs(args)
    kwargs = {**base_optimizer_kwargs(args), "weight_decay": args.weight_decay}
    base = optimizer_class([dict(params=decay, weight_decay=args.weight_decay),
                            dict(params=no_decay, weight_decay=0.0)], **kwargs)
    interval = badam.badam_switch_interval
    blocks = _layer_blocks(named, badam.badam_start_block)
    optimizer = LayerBlockOptimizer(
        base_optimizer=base, named_parameters_list=named, block_prefix_list=blocks,
        switch_block_every=NEVER if interval in (None, -1) else interval, start_block=badam.badam_start_block,
        switch_mode=badam.badam_switch_mode, verbose=badam.badam_verbose,
    )
    logger.info("Using BAdam layer-wise: %d blocks, %s order, switching every %s steps, starting at block %d",
                optimizer.block_num, badam.badam_switch_mode, interval, optimizer.active_block)
    return optimizer


def _layer_blocks(named: list, start: int | None) -> list[list[str]]:
    """One block per transformer layer with trainable parameters (["model.layers.3."]), in model order."""
    blocks: list[list[str]] = []
    for name, _ in named:
        match = LAYER_PREFIX.match(name)
        if match and [match.group(0)] not in blocks:
            blocks.append([match.group(0)])
    if not blocks:
        raise ConfigError("use_badam (badam_mode layer) found no trainable transformer layer to cycle over; "
                          "train full, or freeze with freeze_trainable_layers covering some layers")
    if start is not None and start >= len(blocks):
        raise ConfigError(f"badam_start_block: {start} is out of range; the model has {len(blocks)} trainable "
                          f"blocks (0 to {len(blocks) - 1})")
    return blocks


def _ratio_optimizer(named: list, decay: list, no_decay: list, args: TrainingArguments,
                     badam: BadamArgs) -> torch.optim.Optimizer:
    names = [name for name, _ in named]
    # badam freezes "the" embedding / lm_head parameter it finds by name and fails when there is none
    # (frozen by freeze tuning, or tied): say "include" then, which leaves them as they are.
    has_embedding = any("embed" in name for name in names)
    has_lm_head = any("lm_head" in name for name in names)
    kwargs = base_optimizer_kwargs(args)
    optimizer = BlockOptimizerRatio(
        param_groups=[dict(params=decay, weight_decay=args.weight_decay), dict(params=no_decay, weight_decay=0.0)],
        named_parameters_list=named, update_ratio=badam.badam_update_ratio, mask_mode=badam.badam_mask_mode,
        verbose=badam.badam_verbose, include_embedding=not has_embedding, include_lm_head=not has_lm_head,
        lr=kwargs["lr"], betas=kwargs["betas"], eps=kwargs["eps"],
    )
    logger.info("Using BAdam ratio-wise: %.3g of each weight updated (%s mask)", badam.badam_update_ratio,
                badam.badam_mask_mode)
    return optimizer


def use_sparse_gradient_clipping(trainer: Any) -> None:
    """Ratio-wise BAdam leaves sparse gradients, which torch's foreach clip_grad_norm_ cannot take."""
    trainer.accelerator.clip_grad_norm_ = MethodType(clip_grad_norm_old_version, trainer.accelerator)


class LayerBlockOptimizer(BlockOptimizer):
    """badam's BlockOptimizer with a real verbosity, a real "never switch" and a resumable block position."""

    active_block = 0
    block_order: list[int]  # random switch mode: the blocks still to train this round (badam sets it)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        quiet = contextlib.redirect_stdout(io.StringIO()) if kwargs.get("verbose", 0) < 1 else contextlib.nullcontext()
        with quiet:  # badam prints its random block order whatever the verbosity
            super().__init__(*args, **kwargs)
        self.__dict__.pop("state_dict", None)  # badam aliases the base optimizer's; ours adds the position

    def _update_active_block_idx(self) -> None:
        if self.switch_mode != "random":
            return super()._update_active_block_idx()
        if not self.block_order:  # every block once per round, in a fresh random order each round
            self.block_order = torch.randperm(self.block_num).tolist()
        self.current_block_idx = self.block_order.pop()
        return None

    def step(self, *args: Any, **kwargs: Any) -> None:
        # badam 1.4 tests `(global_step + 1) % every` after counting the step, so its first block trains one
        # step fewer than the others; here every block trains exactly `switch_block_every` steps.
        self.step_single_gpu(*args, **kwargs)
        if self.global_step % self.switch_block_every == 0:
            self.switch_trainable_params()

    def switch_trainable_params(self, verbose: int | None = None) -> None:
        """badam's single-device switch without its LoRA search (LoRA is refused with BAdam) and without its
        gc.collect() (about a second per switch in a large process; reference counting already frees the old
        block's fp32 copies)."""
        self.active_block = self.current_block_idx
        self.active_param_prefixs = self.block_prefix_list[self.current_block_idx] + self.active_modules
        if self.verbose >= 1:
            print(f"BAdam: training block {self.active_block}: {self.active_param_prefixs}", flush=True)
        self._switch_trainable_params_single_gpu(self.verbose)
        self.base_optimizer.state = defaultdict(dict)  # the new block starts with fresh moments
        self._update_active_block_idx()

    def state_dict(self) -> dict[str, Any]:
        state = self.base_optimizer.state_dict()
        state["badam"] = {"active_block": self.active_block, "global_step": self.global_step,
                          "next_block": self.current_block_idx,
                          "block_order": list(getattr(self, "block_order", [])),
                          # the scheduler sets these (ours, not the base optimizer's); a resume needs them back
                          "lr": [group["lr"] for group in self.param_groups]}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        position = state_dict.pop("badam", None)
        if position is not None:
            # Re-activate the saved block (fresh fp32 copies of the restored weights), then load its moments.
            self.current_block_idx = position["active_block"]
            if self.switch_mode == "random":
                self.block_order = position["block_order"] + [position["next_block"]]
            self.switch_trainable_params()
            self.global_step = position["global_step"]
            for group, lr in zip(self.param_groups, position["lr"]):
                group["lr"] = lr
        self.base_optimizer.load_state_dict(state_dict)
