"""Recipe: GRPO (stage grpo) — online RL with verifiable rewards: the GRPO family (GRPO, Dr. GRPO, DAPO,
BNPO, GSPO).

Why our own loop and not TRL's GRPOTrainer (decided 2026-12-03, see docs/architecture.md): TRL tokenizes
prompts itself, with the tokenizer's Jinja chat template or as plain text, while our prompts are rendered by
our LLaMA-Factory templates (slot by slot, the ids SFT trained on); its only way to take ids is the
experimental `rollout_func`, which would leave generation to us anyway. Its model setup, checkpoints and
logging are an HF Trainer's, not our run directory's, and trl is not installed in the stack's venv. The
algorithm is small (objective.py); this loop builds on stage ppo's pieces: reference = adapter off for
LoRA, PPO's reward-model scorers, checkpoints with the prompt position and RNG, the divergence guard.

check -> prepare -> run directory -> prompt rows -> policy -> reference (beta > 0) -> rewards -> loop -> save
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any

import torch

from ....config.generation import generation_settings, resolve_generation
from ....data.pipeline import load_tokenizer_and_template
from ....data.prompt_rows import load_prompt_rows
from ....data.tokenizer import save_tokenizer_with_chat_template
from ....model.loader import load_model
from ....runtime import runtime
from ...preference.reference import load_reference_model
from ...rewards import build_reward_funcs, reward_weights
from ...run.run_dir import RunDirectory
from ...trainer import prepare_run
from ..ppo.recipe import _scheduler_kwargs
from .batches import PromptOrder
from .checks import check_grpo_settings, check_solutions
from .loop import SAMPLES_LOG, GRPOLoop, GRPOSettings
from .objective import LossSettings
from .sampling import Sampling
from .state import load_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from ....config import Config
    from ....config.groups import GenerateArgs, RlhfArgs, TrainArgs

logger = logging.getLogger("tuneforge.train")

__all__ = ["grpo_settings", "run_grpo"]


def run_grpo(cfg: Config) -> dict[str, float]:
    check_grpo_settings(cfg)
    cfg, args, resume_from = prepare_run(cfg)
    output_dir = cfg.train.output_dir
    rlhf, train = cfg.rlhf, cfg.train
    with RunDirectory(cfg, output_dir, resume_from, training=True):
        tokenizer, template = load_tokenizer_and_template(cfg)
        rows = load_prompt_rows(cfg, tokenizer, template, rlhf.max_completion_length)
        check_solutions(rlhf, rows)
        settings = grpo_settings(rlhf, train, cfg.generate, len(rows))
        state = runtime()
        order = PromptOrder(rows, train.seed, state.rank, state.world_size, settings.prompts_per_rank)

        policy = load_model(cfg, tokenizer, is_trainable=True)
        use_reference = rlhf.beta != 0.0
        # beta 0 loads nothing; LoRA's reference is the policy with its adapter off (None here)
        reference = load_reference_model(cfg, tokenizer) if use_reference else None
        funcs = build_reward_funcs(cfg, template, policy, tokenizer)

        trainable = [p for p in policy.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=train.learning_rate, betas=(train.adam_beta1, train.adam_beta2),
                                      eps=train.adam_epsilon, weight_decay=train.weight_decay)
        from transformers import get_scheduler

        optimizer_steps = settings.max_steps * settings.num_iterations
        scheduler = get_scheduler(args.lr_scheduler_type, optimizer,
                                  num_warmup_steps=args.get_warmup_steps(optimizer_steps),
                                  num_training_steps=optimizer_steps,
                                  scheduler_specific_kwargs=_scheduler_kwargs(args.lr_scheduler_kwargs))
        stop_ids = template.get_stop_token_ids(tokenizer)
        generation = {"max_new_tokens": rlhf.max_completion_length, "eos_token_id": stop_ids,
                      "pad_token_id": tokenizer.pad_token_id}
        loop = GRPOLoop(policy, tokenizer, funcs, reward_weights(rlhf, len(funcs)), settings, optimizer, scheduler,
                        generation, stop_ids, output_dir, reference=reference, use_reference=use_reference)
        logger.info("GRPO: %d steps of %d prompts x %d completions per rank (%d ranks), loss %s, %d "
                    "iteration(s) per step, rewards %s", settings.max_steps, settings.prompts_per_rank,
                    settings.num_generations, state.world_size, rlhf.loss_type, settings.num_iterations,
                    ", ".join(func.name for func in funcs))

        start_step = 0
        if resume_from:
            start_step = load_checkpoint(resume_from, loop, order)
            logger.info("GRPO resumes from %s (step %d)", resume_from, start_step)
        if state.is_main:
            _trim_samples(output_dir, start_step)
        save_every = args.save_steps if args.save_strategy == "steps" else 0

        def on_step(step: int) -> None:
            if save_every and step % save_every == 0 and step < settings.max_steps:
                loop.check_weights_finite(step, f"checkpoint-{step}")
                if state.is_main:
                    save_checkpoint(loop, order, lambda folder: save_policy(policy, tokenizer, folder), output_dir,
                                    step)
                _barrier()

        metrics = loop.train(order, on_step=on_step, start_step=start_step)
        loop.check_weights_finite(settings.max_steps, "the final model")
        if state.is_main:
            save_policy(policy, tokenizer, output_dir)
            with open(os.path.join(output_dir, "all_results.json"), "w", encoding="utf-8") as handle:
                json.dump(metrics, handle, indent=2)
            if cfg.method.plot_loss:
                from ...run.plot import plot_loss

                plot_loss(output_dir, keys=("loss", "reward"))
        _barrier()
    return metrics


def grpo_settings(rlhf: RlhfArgs, train: TrainArgs, generate: GenerateArgs, num_prompts: int) -> GRPOSettings:
    import math

    world = runtime().world_size
    per_step = train.per_device_train_batch_size * train.gradient_accumulation_steps * world
    # max_steps > 0 wins over num_train_epochs, as for the other stages.
    max_steps = train.max_steps if train.max_steps > 0 else max(
        1, math.ceil(train.num_train_epochs * num_prompts / per_step))
    epsilon_high = rlhf.epsilon_high if rlhf.epsilon_high is not None else rlhf.epsilon  # TRL: unset = epsilon
    loss = LossSettings(rlhf.loss_type, rlhf.importance_sampling_level, rlhf.epsilon, epsilon_high, rlhf.beta,
                        rlhf.max_completion_length)
    sampling = Sampling(generate.temperature, generate.top_p, generate.top_k) if generate.do_sample else None
    return GRPOSettings(
        num_generations=rlhf.num_generations, max_completion_length=rlhf.max_completion_length,
        micro_batch_prompts=train.per_device_train_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps, num_iterations=rlhf.num_iterations,
        loss=loss, scale_rewards=rlhf.scale_rewards, mask_truncated_completions=rlhf.mask_truncated_completions,
        dynamic_sampling=rlhf.dynamic_sampling, max_resample_times=rlhf.max_resample_times, max_steps=max_steps,
        max_grad_norm=train.max_grad_norm, logging_steps=max(1, int(train.logging_steps)), seed=train.seed,
        sampling=sampling)


def save_policy(policy: Any, tokenizer: Any, output_dir: str) -> None:
    os.makedirs(output_dir, exist_ok=True)
    if hasattr(policy, "peft_config"):
        policy.save_pretrained(output_dir, selected_adapters=["default"])  # not a loaded reward adapter
    else:
        policy.save_pretrained(output_dir)
    save_tokenizer_with_chat_template(tokenizer, output_dir)


def _trim_samples(output_dir: str, after_step: int) -> None:
    """A fresh run starts grpo_samples.jsonl anew; a resumed one keeps the samples up to its checkpoint."""
    path = os.path.join(output_dir, SAMPLES_LOG)
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as handle:
        kept = [line for line in handle if line.strip() and json.loads(line)["step"] <= after_step]
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(kept)


def _barrier() -> None:
    import torch.distributed as dist

    if runtime().world_size > 1 and dist.is_available() and dist.is_initialized():
        dist.barrier()
