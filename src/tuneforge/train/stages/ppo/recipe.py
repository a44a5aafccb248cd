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
from typing import TYPE_CHECKING, Any

import torch

from ....config.generation import generation_settings, resolve_generation
from ....data.pipeline import get_dataset, load_tokenizer_and_template
from ....data.tokenizer import save_tokenizer_with_chat_template
from ....errors import ConfigError
from ....model.loader import load_model
from ....model.value_head import ValueHead
from ....runtime import runtime
from ...preference.reference import load_reference_model
from ...run.interrupt import report_interrupted, sigint_requests_stop
from ...run.run_dir import RunDirectory
from ...trainer import prepare_run
from .loop import PPOLoop, PPOSettings
from .policy import new_value_head, save_value_head
from .rewards import build_reward_source, check_reward_settings
from .state import PromptBatches, load_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from ....config import Config
    from ....config.groups import RlhfArgs, TrainArgs

logger = logging.getLogger("tuneforge.train")

SUPPORTED_OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adamw_hf")


def check_ppo_settings(cfg: Config) -> None:
    """Everything about a PPO config that can be wrong, before any data or weights load."""
    rlhf, train = cfg.rlhf, cfg.train
    check_reward_settings(rlhf)
    if train.optim not in SUPPORTED_OPTIMIZERS:
        raise ConfigError(f"optim: {train.optim} is not available for stage ppo, whose loop builds its own AdamW; "
                          "remove optim (or use adamw_torch)")
    if runtime().is_distributed or train.deepspeed:
        raise ConfigError("stage ppo trains in one process (its loop does not synchronise gradients across "
                          "ranks); unset NPROC_PER_NODE / NNODES / FORCE_TORCHRUN and deepspeed for PPO runs")
    # The transformers arguments' report_to: "all" / "none" already expanded to the logger names.
    loggers = [name for name in (cfg.training_args.report_to or []) if name != "none"]
    if loggers:
        raise ConfigError(f"report_to: {', '.join(loggers)}: stage ppo reports to its run directory only "
                          "(trainer_log.jsonl, ppo_samples.jsonl, plot_loss); set report_to: none")
    if train.use_swanlab:
        raise ConfigError("use_swanlab: stage ppo reports to its run directory only (trainer_log.jsonl, "
                          "ppo_samples.jsonl, plot_loss); set use_swanlab: false")
    if rlhf.ppo_epochs < 1 or rlhf.ppo_buffer_size < 1:
        raise ConfigError("ppo_epochs and ppo_buffer_size must be at least 1")
    if rlhf.ppo_target <= 0:
        raise ConfigError(f"ppo_target: {rlhf.ppo_target} must be positive (the KL the controller aims for)")


def run_ppo(cfg: Config) -> dict[str, float]:
    check_ppo_settings(cfg)
    cfg, args, resume_from = prepare_run(cfg)
    if not args.do_train:
        raise ConfigError("stage ppo only trains: set do_train: true")
    output_dir = cfg.train.output_dir
    with RunDirectory(cfg, output_dir, resume_from, training=True):
        tokenizer, template = load_tokenizer_and_template(cfg)
        dataset = get_dataset(cfg, tokenizer, template, stage="ppo").train_dataset
        check_text_only(dataset)
        policy = load_model(cfg, tokenizer, is_trainable=True)
        device = next(policy.parameters()).device
        value_head = new_value_head(policy).to(device)
        reference = load_reference_model(cfg, tokenizer)  # None for LoRA: the policy with its adapter off
        reward = build_reward_source(cfg, policy, tokenizer)

        train = cfg.train
        settings = ppo_settings(cfg.rlhf, train, len(dataset))
        trainable = [p for p in policy.parameters() if p.requires_grad] + list(value_head.parameters())
        optimizer = torch.optim.AdamW(trainable, lr=train.learning_rate, betas=(train.adam_beta1, train.adam_beta2),
                                      eps=train.adam_epsilon, weight_decay=train.weight_decay)
        from transformers import get_scheduler

        scheduler = get_scheduler(args.lr_scheduler_type, optimizer,
                                  num_warmup_steps=args.get_warmup_steps(settings.max_steps),
                                  num_training_steps=settings.max_steps,
                                  scheduler_specific_kwargs=_scheduler_kwargs(args.lr_scheduler_kwargs))
        generation, _ = resolve_generation(generation_settings(cfg.generate))
        stop_ids = template.get_stop_token_ids(tokenizer) if template is not None else [tokenizer.eos_token_id]
        generation.update(eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id, use_cache=True)
        logger.info("PPO: %d steps of %d rollouts, %d epochs each, mini-batch %d", settings.max_steps,
                    settings.rollout_size, settings.ppo_epochs, settings.mini_batch_size)

        loop = PPOLoop(policy, value_head, tokenizer, reward, settings, optimizer, scheduler, generation,
                       output_dir, reference=reference)
        save_every = args.save_steps if args.save_strategy == "steps" else 0  # a SaveStrategy, a str enum

        batches = PromptBatches(dataset["input_ids"], settings.rollout_size, settings.seed)
        start_step = load_checkpoint(resume_from, loop, batches, value_head) if resume_from else 0
        if resume_from:
            logger.info("PPO resumes from %s (step %d)", resume_from, start_step)

        def checkpoint(step: int) -> None:
            loop.check_weights_finite(step, f"checkpoint-{step}")
            save_checkpoint(loop, batches, lambda folder: save_policy(policy, value_head, tokenizer, folder),
                            output_dir, step)

        def on_step(step: int) -> None:
            if save_every and step % save_every == 0 and step < settings.max_steps:
                checkpoint(step)

        # Ctrl-C: the step ends, a checkpoint is written, the resume command printed (as the shared trainer).
        with sigint_requests_stop() as stop:
            metrics = loop.train(batches, on_step=on_step, start_step=start_step,
                                 should_stop=lambda: stop.requested)
        if loop.stopped_at is not None:
            if not os.path.isdir(os.path.join(output_dir, f"checkpoint-{loop.stopped_at}")):
                checkpoint(loop.stopped_at)
            report_interrupted(output_dir, loop.stopped_at, settings.max_steps)
            raise KeyboardInterrupt  # the CLI prints "interrupted" and exits 130; no final model is saved
        loop.check_weights_finite(settings.max_steps, "the final model")
        save_policy(policy, value_head, tokenizer, output_dir)
        _write_results(output_dir, metrics)
        if cfg.method.plot_loss:
            from ...run.plot import plot_loss

            plot_loss(output_dir, keys=("loss", "reward"))
    return metrics


def check_text_only(dataset: Any) -> None:
    """Rollouts generate from token ids alone; image/video/audio prompts would lose their pixels."""
    for column in ("images", "videos", "audios"):
        if column in dataset.column_names and any(value for value in dataset[column]):
            raise ConfigError(f"dataset: stage ppo trains on text prompts only, and this dataset has {column}; "
                              "remove the media columns from its dataset_info.json entry or use stage sft/dpo")


def ppo_settings(rlhf: RlhfArgs, train: TrainArgs, num_prompts: int) -> PPOSettings:
    rollout_size = train.per_device_train_batch_size * train.gradient_accumulation_steps * rlhf.ppo_buffer_size
    if num_prompts < rollout_size:
        raise ConfigError(f"the dataset has {num_prompts} usable prompts but one PPO step takes "
                          f"{rollout_size} (per_device_train_batch_size x gradient_accumulation_steps x "
                          "ppo_buffer_size); add data or lower those")
    # max_steps > 0 wins over num_train_epochs, as for the other stages.
    max_steps = train.max_steps if train.max_steps > 0 else max(
        1, math.ceil(train.num_train_epochs * num_prompts / rollout_size))
    return PPOSettings(
        mini_batch_size=train.per_device_train_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        buffer_size=rlhf.ppo_buffer_size, ppo_epochs=rlhf.ppo_epochs, max_steps=max_steps,
        kl_target=rlhf.ppo_target, score_norm=rlhf.ppo_score_norm, whiten_rewards=rlhf.ppo_whiten_rewards,
        max_grad_norm=train.max_grad_norm, seed=train.seed,
        # logging_steps below 1 is a fraction of the run for transformers; PPO then logs every step.
        logging_steps=max(1, int(train.logging_steps)),
    )


def save_policy(policy: Any, value_head: ValueHead, tokenizer: Any, output_dir: str) -> None:
    """The policy (adapter or full weights) + value head + tokenizer with its chat template."""
    os.makedirs(output_dir, exist_ok=True)
    if hasattr(policy, "peft_config"):
        policy.save_pretrained(output_dir, selected_adapters=["default"])  # not the loaded reward adapter
    else:
        policy.save_pretrained(output_dir)
    save_value_head(value_head, output_dir)
    save_tokenizer_with_chat_template(tokenizer, output_dir)


def _scheduler_kwargs(kwargs: dict[str, Any] | str | None) -> dict[str, Any]:
    """lr_scheduler_kwargs as a dict (transformers types it dict or JSON text; it parses the text itself)."""
    return json.loads(kwargs) if isinstance(kwargs, str) else dict(kwargs or {})


def _write_results(output_dir: str, metrics: dict[str, float]) -> None:
    with open(os.path.join(output_dir, "all_results.json"), "w", encoding="utf-8") as handle:
        json.dump(metrics, handle, indent=2)
