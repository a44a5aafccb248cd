"""Recipe: PPO (stage ppo) — a policy with a value head trained against a reward model.

Why our own loop: PPO is gone from current trl (removed in 1.13), and LLaMA-Factory's PPO needs
trl 0.8.6-0.9.6, which conflicts with the rest of the stack. The algorithm is small (objective.py,
loop.py); owning it keeps it readable, testable and free of trl's API churn.

prepare -> run directory -> prompts -> policy (+ value head) -> reference -> reward source -> loop -> save
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any

import torch

from ....data.pipeline import get_dataset, load_tokenizer_and_template
from ....errors import ConfigError
from ....config.generation import generation_settings, resolve_generation
from ....model.loader import load_model
from ...preference.reference import load_reference_model
from ...run.run_dir import RunDirectory
from ....data.tokenizer import save_tokenizer_with_chat_template
from ...trainer import prepare_run
from .loop import PPOLoop, PPOSettings
from .policy import new_value_head, save_value_head
from .rewards import build_reward_source, check_reward_settings
from .state import PromptBatches, load_checkpoint, save_checkpoint

logger = logging.getLogger("tuneforge.train")

SUPPORTED_OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adamw_hf")


def check_ppo_settings(cfg: Any) -> None:
    """Everything about a PPO config that can be wrong, before any data or weights load."""
    check_reward_settings(cfg)
    args = cfg.training_args
    optim = str(getattr(args.optim, "value", args.optim))
    if optim not in SUPPORTED_OPTIMIZERS:
        raise ConfigError(f"optim: {optim} is not available for stage ppo, whose loop builds its own AdamW; "
                          "remove optim (or use adamw_torch)")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or getattr(cfg, "deepspeed", None):
        raise ConfigError("stage ppo trains in one process (its loop does not synchronise gradients across "
                          "ranks); unset NPROC_PER_NODE / NNODES / FORCE_TORCHRUN and deepspeed for PPO runs")
    loggers = [name for name in (args.report_to or []) if name != "none"]
    if loggers:
        raise ConfigError(f"report_to: {', '.join(loggers)}: stage ppo reports to its run directory only "
                          "(trainer_log.jsonl, ppo_samples.jsonl, plot_loss); set report_to: none")
    if getattr(cfg, "ppo_epochs", 4) < 1 or getattr(cfg, "ppo_buffer_size", 1) < 1:
        raise ConfigError("ppo_epochs and ppo_buffer_size must be at least 1")
    if getattr(cfg, "ppo_target", 6.0) <= 0:
        raise ConfigError(f"ppo_target: {cfg.ppo_target} must be positive (the KL the controller aims for)")


def run_ppo(cfg: Any) -> dict[str, float]:
    check_ppo_settings(cfg)
    cfg, args, resume_from = prepare_run(cfg)
    if not args.do_train:
        raise ConfigError("stage ppo only trains: set do_train: true")
    with RunDirectory(cfg, args.output_dir, resume_from, training=True):
        tokenizer, template = load_tokenizer_and_template(cfg)
        dataset = get_dataset(cfg, tokenizer, template, stage="ppo").train_dataset
        check_text_only(dataset)
        policy = load_model(cfg, tokenizer, is_trainable=True)
        device = next(policy.parameters()).device
        value_head = new_value_head(policy).to(device)
        reference = load_reference_model(cfg, tokenizer)  # None for LoRA: the policy with its adapter off
        reward = build_reward_source(cfg, policy, tokenizer)

        settings = ppo_settings(cfg, args, len(dataset))
        trainable = [p for p in policy.parameters() if p.requires_grad] + list(value_head.parameters())
        optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                      eps=args.adam_epsilon, weight_decay=args.weight_decay)
        from transformers import get_scheduler

        scheduler = get_scheduler(args.lr_scheduler_type, optimizer,
                                  num_warmup_steps=args.get_warmup_steps(settings.max_steps),
                                  num_training_steps=settings.max_steps,
                                  scheduler_specific_kwargs=args.lr_scheduler_kwargs or {})
        generation, _ = resolve_generation(generation_settings(cfg))
        stop_ids = template.get_stop_token_ids(tokenizer) if template is not None else [tokenizer.eos_token_id]
        generation.update(eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id, use_cache=True)
        logger.info("PPO: %d steps of %d rollouts, %d epochs each, mini-batch %d", settings.max_steps,
                    settings.rollout_size, settings.ppo_epochs, settings.mini_batch_size)

        loop = PPOLoop(policy, value_head, tokenizer, reward, settings, optimizer, scheduler, generation,
                       args.output_dir, reference=reference)
        save_every = args.save_steps if str(getattr(args.save_strategy, "value", args.save_strategy)) == "steps" else 0

        batches = PromptBatches(dataset["input_ids"], settings.rollout_size, settings.seed)
        start_step = load_checkpoint(resume_from, loop, batches, value_head) if resume_from else 0
        if resume_from:
            logger.info("PPO resumes from %s (step %d)", resume_from, start_step)

        def on_step(step: int) -> None:
            if save_every and step % save_every == 0 and step < settings.max_steps:
                save_checkpoint(loop, batches, lambda folder: save_policy(policy, value_head, tokenizer, folder),
                                args.output_dir, step)

        metrics = loop.train(batches, on_step=on_step, start_step=start_step)
        save_policy(policy, value_head, tokenizer, args.output_dir)
        _write_results(args.output_dir, metrics)
        if getattr(cfg, "plot_loss", False):
            from ...run.plot import plot_loss

            plot_loss(args.output_dir, keys=("loss", "reward"))
    return metrics


def check_text_only(dataset: Any) -> None:
    """Rollouts generate from token ids alone; image/video/audio prompts would lose their pixels."""
    for column in ("images", "videos", "audios"):
        if column in dataset.column_names and any(value for value in dataset[column]):
            raise ConfigError(f"dataset: stage ppo trains on text prompts only, and this dataset has {column}; "
                              "remove the media columns from its dataset_info.json entry or use stage sft/dpo")


def ppo_settings(cfg: Any, args: Any, num_prompts: int) -> PPOSettings:
    settings = PPOSettings(
        mini_batch_size=args.per_device_train_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        buffer_size=cfg.ppo_buffer_size, ppo_epochs=cfg.ppo_epochs, kl_target=cfg.ppo_target,
        score_norm=bool(cfg.ppo_score_norm), whiten_rewards=bool(cfg.ppo_whiten_rewards),
        max_grad_norm=args.max_grad_norm, seed=args.seed,
        logging_steps=max(1, int(args.logging_steps)) if args.logging_steps >= 1 else 1,
    )
    if num_prompts < settings.rollout_size:
        raise ConfigError(f"the dataset has {num_prompts} usable prompts but one PPO step takes "
                          f"{settings.rollout_size} (per_device_train_batch_size x gradient_accumulation_steps x "
                          "ppo_buffer_size); add data or lower those")
    settings.max_steps = args.max_steps if args.max_steps and args.max_steps > 0 else max(
        1, math.ceil(args.num_train_epochs * num_prompts / settings.rollout_size))
    return settings


def save_policy(policy: Any, value_head: torch.nn.Module, tokenizer: Any, output_dir: str) -> None:
    """The policy (adapter or full weights) + value head + tokenizer with its chat template."""
    os.makedirs(output_dir, exist_ok=True)
    if hasattr(policy, "peft_config"):
        policy.save_pretrained(output_dir, selected_adapters=["default"])  # not the loaded reward adapter
    else:
        policy.save_pretrained(output_dir)
    save_value_head(value_head, output_dir)
    save_tokenizer_with_chat_template(tokenizer, output_dir)


def _write_results(output_dir: str, metrics: dict[str, float]) -> None:
    with open(os.path.join(output_dir, "all_results.json"), "w", encoding="utf-8") as handle:
        json.dump(metrics, handle, indent=2)
