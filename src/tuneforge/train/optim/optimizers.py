"""Optimizers the trainer builds itself: GaLore, APOLLO, LoRA+, BAdam (badam.py), Muon and Adam-mini
(muon.py), on top of HF's `optim`.

HF's Trainer already builds `optim: adamw_torch | adamw_8bit | paged_adamw_8bit | adafactor` (bitsandbytes for
the 8-bit ones); `create_custom_optimizer` returns None for those and the Trainer proceeds as usual. The
others follow LLaMA-Factory 0.9.5's grouping:
  - GaLore / APOLLO: the weight matrices of the target linear layers get low-rank projected updates (their
    param group carries rank, update_proj_gap, scale, proj_type); the other trainable parameters sit in a
    decay and a no-decay group. `*_layerwise`: one optimizer per parameter, stepped from a
    post-accumulate-grad hook as soon as its gradient is ready, so no full set of gradients is ever held;
    no-op stand-ins face the Trainer as its optimizer and scheduler, and carry the per-parameter optimizer
    and schedule states into checkpoints, so a resume continues exactly.
  - LoRA+: peft's create_loraplus_optimizer (B matrices at ratio x lr, LoRA embedding layers at
    loraplus_lr_embedding).
Why not transformers' own `optim: galore_adamw / apollo_adamw`: they lump every non-target parameter
(frozen ones included) into one group without the weight-decay split, read their settings from an
`optim_args` string, and never pass APOLLO's scale_front to the optimizer.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from transformers import Trainer, get_scheduler
from transformers.trainer_pt_utils import LayerWiseDummyOptimizer

from ...config import Config
from ...errors import ConfigError
from ...model.adapters.lora import linear_module_names
from .muon import create_adam_mini_optimizer, create_muon_optimizer

if TYPE_CHECKING:
    from transformers import TrainingArguments

    from ...config.groups import ApolloArgs, BadamArgs, GaloreArgs, LoraArgs

logger = logging.getLogger(__name__)

# module to import -> the pip requirement that provides it (pins: constraints.txt)
PACKAGES = {"galore_torch": "galore-torch==1.0", "apollo_torch": "apollo-torch==1.0.3", "badam": "badam==1.4",
            "bitsandbytes": "bitsandbytes==0.50.2", "adam_mini": "adam-mini==1.1.1"}
BNB_OPTIMS = ("adamw_bnb_8bit", "adamw_8bit", "paged_adamw_8bit")


@dataclass(frozen=True)
class LowRankSetup:
    """GaLore's or APOLLO's settings under common names (their keys differ by prefix and by a few extras)."""

    method: str  # "galore" or "apollo"
    target: list[str]
    layerwise: bool
    group_settings: dict[str, Any]  # what the projected weights' param group carries to the optimizer
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)  # constructor keywords beyond HF's


def galore_setup(galore: GaloreArgs) -> LowRankSetup:
    return LowRankSetup(
        method="galore", target=list(galore.galore_target), layerwise=galore.galore_layerwise,
        group_settings={"rank": galore.galore_rank, "update_proj_gap": galore.galore_update_interval,
                        "scale": galore.galore_scale, "proj_type": galore.galore_proj_type})


def apollo_setup(apollo: ApolloArgs) -> LowRankSetup:
    return LowRankSetup(
        method="apollo", target=list(apollo.apollo_target), layerwise=apollo.apollo_layerwise,
        group_settings={"rank": apollo.apollo_rank, "update_proj_gap": apollo.apollo_update_interval,
                        "scale": apollo.apollo_scale, "proj_type": apollo.apollo_proj_type,
                        "proj": apollo.apollo_proj, "scale_type": apollo.apollo_scale_type},
        # LLaMA-Factory puts scale_front into the param group, where APOLLOAdamW never reads it.
        optimizer_kwargs={"scale_front": bool(apollo.apollo_scale_front)})


def check_optimizer_setup(cfg: Config, args: TrainingArguments) -> None:
    """Problems that need the training arguments of this launch (installed packages, world size);
    raised before any weights load. The config-only rules are in config/optimizer_checks.py."""
    optim = getattr(args.optim, "value", args.optim)  # an OptimizerNames member once TrainingArguments has it
    use_galore, use_apollo, use_badam = cfg.galore.use_galore, cfg.apollo.use_apollo, cfg.badam.use_badam
    needs = []
    if use_galore:
        needs.append(("use_galore", "galore_torch"))
    if use_apollo:
        needs.append(("use_apollo", "apollo_torch"))
    if use_badam:
        needs.append(("use_badam", "badam"))
    if cfg.method.use_adam_mini:
        needs.append(("use_adam_mini", "adam_mini"))
    if optim in BNB_OPTIMS:
        needs.append((f"optim: {optim}", "bitsandbytes"))
    problems = [f"{key} needs the {PACKAGES[module].split('==')[0]} package: pip install {PACKAGES[module]}"
                for key, module in needs if importlib.util.find_spec(module) is None]
    if use_galore and optim in BNB_OPTIMS and args.device.type != "cuda":
        problems.append(f"use_galore with optim {optim} needs a CUDA GPU (galore-torch's 8-bit AdamW calls "
                        f"torch.cuda.synchronize() at every step); on {args.device.type} use optim adamw_torch or "
                        "adafactor.")
    if cfg.method.use_muon and (args.deepspeed or args.fsdp):
        problems.append(f"use_muon runs without {'DeepSpeed' if args.deepspeed else 'FSDP'}: Muon orthogonalises "
                        "each whole weight matrix, and DeepSpeed / FSDP hand the optimizer flattened or sharded "
                        "pieces. Remove deepspeed / fsdp or use_muon.")
    if args.world_size > 1:
        for method, used, layerwise in (("galore", use_galore, cfg.galore.galore_layerwise),
                                        ("apollo", use_apollo, cfg.apollo.apollo_layerwise)):
            if used and layerwise:
                problems.append(f"{method}_layerwise runs on a single device only (this launch has "
                                f"{args.world_size} processes); set {method}_layerwise false.")
        if use_badam:
            problems.append(f"use_badam runs on a single device here (this launch has {args.world_size} processes): "
                            "distributed BAdam needs DeepSpeed ZeRO-3, which tuneforge does not launch yet.")
    if problems:
        raise ConfigError(problems)
    if (use_galore or use_apollo) and (args.bf16 or args.fp16) and not cfg.method.pure_bf16:
        logger.warning("GaLore / APOLLO with mixed precision keeps fp32 master weights, which uses much more "
                       "memory than pure_bf16.")


def create_custom_optimizer(model: torch.nn.Module, args: TrainingArguments,
                            cfg: Config) -> torch.optim.Optimizer | None:
    """The optimizer the config asks for beyond HF's `optim`, or None to let the Trainer build `optim`."""
    if cfg.galore.use_galore:
        return create_low_rank_optimizer(model, args, galore_setup(cfg.galore), linear_module_names(model, cfg))
    if cfg.apollo.use_apollo:
        return create_low_rank_optimizer(model, args, apollo_setup(cfg.apollo), linear_module_names(model, cfg))
    if cfg.lora.loraplus_lr_ratio is not None:
        return create_loraplus_optimizer(model, args, cfg.lora)
    if cfg.badam.use_badam:
        from .badam import create_badam_optimizer

        return create_badam_optimizer(model, args, cfg.badam)
    if cfg.method.use_muon:
        return create_muon_optimizer(model, args)
    if cfg.method.use_adam_mini:
        return create_adam_mini_optimizer(model, args)
    return None


def decay_parameter_names(model: torch.nn.Module) -> set[str]:
    """Names HF's Trainer applies weight decay to (not biases, not norms)."""
    # A method that never reads self.
    return set(Trainer.get_decay_parameter_names(None, model))  # type: ignore[arg-type]


def split_by_decay(model: torch.nn.Module, skip: set[int]) -> tuple[list, list]:
    """Trainable parameters not in `skip` (ids): (decay, no_decay)."""
    decay_names = decay_parameter_names(model)
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if param.requires_grad and id(param) not in skip:
            (decay if name in decay_names else no_decay).append(param)
    return decay, no_decay


def base_optimizer_kwargs(args: TrainingArguments) -> dict[str, Any]:
    """What HF's Trainer would pass its `optim` class (lr, betas, eps, 8-bit / Adafactor settings)."""
    _, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    kwargs = dict(kwargs)
    kwargs.pop("fused", None)  # the galore/apollo/badam classes have no fused kernel
    return kwargs


def low_rank_targets(model: torch.nn.Module, setup: LowRankSetup, linear: set[str]) -> list[torch.nn.Parameter]:
    """Weight matrices of the linear layers named by `<method>_target` (`all`: every linear layer but the
    output layer, as for LoRA; `linear` holds their short names)."""
    method, requested = setup.method, setup.target
    targets = sorted(linear) if requested == ["all"] else requested
    found: dict[str, list[torch.nn.Parameter]] = {target: [] for target in targets}
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        for target in targets:
            if target in name:
                found[target] += [p for p in module.parameters() if p.requires_grad and p.ndim > 1]
                break
    missing = [target for target, params in found.items() if not params]
    if requested == ["all"] and len(missing) < len(found):
        missing = []  # freeze tuning: some linear layers are simply not trainable
    if missing:
        raise ConfigError(f"{method}_target: {', '.join(map(repr, missing))} matches no trainable linear layer; "
                          f"choose from: all, {', '.join(sorted(linear))}")
    return [param for params in found.values() for param in params]


def create_low_rank_optimizer(model: torch.nn.Module, args: TrainingArguments, setup: LowRankSetup,
                              linear: set[str]) -> torch.optim.Optimizer:
    method = setup.method
    optimizer_class, extra = _low_rank_class(args, setup)
    kwargs = {**base_optimizer_kwargs(args), **extra}
    targets = low_rank_targets(model, setup, linear)
    decay, no_decay = split_by_decay(model, skip={id(p) for p in targets})
    rank_settings = dict(setup.group_settings)
    register_projector_for_resume(method)
    weight_decay = args.weight_decay
    groups = [dict(params=no_decay, weight_decay=0.0), dict(params=decay, weight_decay=weight_decay),
              dict(params=targets, weight_decay=weight_decay, **rank_settings)]
    logger.info("Using %s (%s) on %d weight matrices with %s", method.upper(), optimizer_class.__name__,
                len(targets), rank_settings)
    if not setup.layerwise:
        return optimizer_class([group for group in groups if group["params"]], **kwargs)

    logger.warning("%s_layerwise: each weight is updated inside backward; the logged grad_norm is 0 and "
                   "max_grad_norm clipping does not apply.", method)
    per_parameter = {}
    for group in groups:
        for param in group["params"]:
            settings = {key: value for key, value in group.items() if key != "params"}
            per_parameter[param] = optimizer_class([dict(params=[param], **settings)], **kwargs)

    def step_this_parameter(param: torch.nn.Parameter) -> None:
        if param.grad is not None:
            per_parameter[param].step()
            per_parameter[param].zero_grad()

    for param in per_parameter:
        param.register_post_accumulate_grad_hook(step_this_parameter)
    return LayerwiseStandIn(optimizer_dict=per_parameter, lr=args.learning_rate)


class LayerwiseStandIn(LayerWiseDummyOptimizer):
    """transformers' no-op stand-in for the per-parameter optimizers, whose states it saves and restores
    (transformers' own saves nothing, so a resumed layer-wise run restarted every moment)."""

    def state_dict(self) -> dict[str, Any]:
        return {"per_parameter": [optimizer.state_dict() for optimizer in self.optimizer_dict.values()]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for optimizer, saved in zip(self.optimizer_dict.values(), state_dict["per_parameter"], strict=True):
            optimizer.load_state_dict(saved)


def create_custom_scheduler(args: TrainingArguments, optimizer: Any, num_training_steps: int) -> Any:
    """Layer-wise GaLore/APOLLO: one schedule per weight, stepped right after its update (as transformers'
    get_scheduler does for its stand-in), held where a checkpoint reaches them; None for other optimizers.
    transformers 5 makes the scheduler after accelerate wrapped the optimizer, so its own get_scheduler no
    longer recognises the stand-in and the per-weight learning rates would never follow the schedule."""
    optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wrapper
    if not isinstance(optimizer, LayerwiseStandIn):
        return None
    # TrainingArguments parses a JSON string of lr_scheduler_kwargs into a dict when it is built.
    specific = args.lr_scheduler_kwargs if isinstance(args.lr_scheduler_kwargs, dict) else None
    schedulers = {param: get_scheduler(args.lr_scheduler_type, optimizer=inner,
                                       num_warmup_steps=args.get_warmup_steps(num_training_steps),
                                       num_training_steps=num_training_steps,
                                       scheduler_specific_kwargs=specific)
                  for param, inner in optimizer.optimizer_dict.items()}

    def step_this_schedule(param: torch.nn.Parameter) -> None:
        schedulers[param].step()

    for param in schedulers:
        param.register_post_accumulate_grad_hook(step_this_schedule)
    return LayerwiseSchedules(list(schedulers.values()))


class LayerwiseSchedules:
    """Faces the Trainer as its lr scheduler: each weight's schedule steps in that weight's hook, so step() has
    nothing left to do; reports the (common) learning rate and saves / restores every schedule.
    (transformers' LayerWiseDummyScheduler cannot be built on torch 2.13: it reports more learning rates than
    its dummy optimizer has param groups.)"""

    def __init__(self, schedulers: list) -> None:
        self.schedulers = schedulers

    def step(self, *args: Any, **kwargs: Any) -> None:
        pass

    def get_last_lr(self) -> list[float]:
        return self.schedulers[0].get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        return {"per_parameter": [scheduler.state_dict() for scheduler in self.schedulers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for scheduler, saved in zip(self.schedulers, state_dict["per_parameter"], strict=True):
            scheduler.load_state_dict(saved)


def _low_rank_class(args: TrainingArguments, setup: LowRankSetup) -> tuple[type, dict[str, Any]]:
    """(optimizer class for this `optim`, constructor keywords beyond HF's) for GaLore or APOLLO."""
    if setup.method == "apollo":
        from apollo_torch import APOLLOAdamW

        return APOLLOAdamW, dict(setup.optimizer_kwargs)
    from galore_torch import GaLoreAdafactor, GaLoreAdamW, GaLoreAdamW8bit

    if args.optim in BNB_OPTIMS:
        return GaLoreAdamW8bit, {}
    if args.optim == "adafactor":
        return GaLoreAdafactor, {}
    return GaLoreAdamW, {"no_deprecation_warning": True}


def register_projector_for_resume(method: str) -> None:
    """GaLore/APOLLO keep their projector object in the optimizer state; HF's Trainer reloads optimizer.pt
    with torch.load(weights_only=True), which refuses unknown classes unless they are allowed here."""
    if method == "galore":
        from galore_torch.galore_projector import GaLoreProjector

        classes = [GaLoreProjector]
    else:
        from apollo_torch.random_projector import GradientProjector
        from apollo_torch.svd_projector import GaLoreProjector as ApolloSVDProjector

        classes = [GradientProjector, ApolloSVDProjector]
    torch.serialization.add_safe_globals(classes)


def create_loraplus_optimizer(model: Any, args: TrainingArguments, lora: LoraArgs) -> torch.optim.Optimizer:
    """LoRA+: the B matrices (and 1-d trainable tensors) learn at loraplus_lr_ratio x lr, LoRA embedding
    layers at loraplus_lr_embedding, everything else at lr (peft's grouping)."""
    from peft.optimizers import create_loraplus_optimizer as peft_loraplus

    ratio = lora.loraplus_lr_ratio
    assert ratio is not None, "create_custom_optimizer asks for LoRA+ only with a ratio"

    optimizer_class, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    kwargs = dict(kwargs)
    lr = kwargs.pop("lr")
    logger.info("Using LoRA+ with lr ratio %.2f", ratio)
    return peft_loraplus(model, optimizer_class, lr=lr, loraplus_lr_ratio=ratio,
                         loraplus_lr_embedding=lora.loraplus_lr_embedding,
                         loraplus_weight_decay=args.weight_decay, **kwargs)


def adapt_trainer_to_optimizer(trainer: Any, badam: BadamArgs) -> None:
    """Trainer changes an optimizer needs: sparse-gradient clipping for ratio-wise BAdam."""
    if badam.use_badam and badam.badam_mode == "ratio":
        from .badam import use_sparse_gradient_clipping

        use_sparse_gradient_clipping(trainer)
