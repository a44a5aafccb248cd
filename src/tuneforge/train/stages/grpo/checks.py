"""Everything about a GRPO config that can be wrong, checked before any weights load (the data-dependent
check, `check_solutions`, right after the prompts are read)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ....errors import ConfigError
from ....runtime import runtime
from ...rewards import check_reward_funcs

if TYPE_CHECKING:
    from ....config import Config
    from ....config.groups import DataArgs, RlhfArgs
    from ....data.prompt_rows import PromptRow

SUPPORTED_OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adamw_hf")


def check_grpo_settings(cfg: Config) -> None:
    rlhf, train = cfg.rlhf, cfg.train
    check_vllm(rlhf)
    names = check_reward_funcs(rlhf)
    if rlhf.reward_model is not None:
        from ..ppo.rewards import check_reward_settings

        if rlhf.reward_model_type == "lora" and cfg.method.finetuning_type != "lora":
            raise ConfigError(f"reward_model_type: lora adds the reward adapter to the policy's base, which needs "
                              f"finetuning_type: lora (it is {cfg.method.finetuning_type}); use reward_model_type "
                              "full or api")
        check_reward_settings(rlhf)
    if "accuracy" in names:
        check_solution_columns(cfg.data)
    if not train.do_train:
        raise ConfigError("stage grpo only trains: set do_train: true")
    if train.optim not in SUPPORTED_OPTIMIZERS:
        raise ConfigError(f"optim: {train.optim} is not available for stage grpo, whose loop builds its own AdamW; "
                          "remove optim (or use adamw_torch)")
    if train.deepspeed:
        raise ConfigError("deepspeed: stage grpo's loop does not run under DeepSpeed yet; remove deepspeed (several "
                          "processes under torchrun work: NPROC_PER_NODE=2 tuneforge train ...)")
    loggers = [name for name in (cfg.training_args.report_to or []) if name != "none"]
    if loggers:
        raise ConfigError(f"report_to: {', '.join(loggers)}: stage grpo reports to its run directory "
                          "(trainer_log.jsonl, grpo_samples.jsonl, plot_loss); set report_to: none")
    if rlhf.num_generations < 2:
        raise ConfigError(f"num_generations: {rlhf.num_generations}: GRPO compares completions of the same prompt; "
                          "use at least 2")
    for key, value in (("max_completion_length", rlhf.max_completion_length),
                       ("num_iterations", rlhf.num_iterations)):
        if value < 1:
            raise ConfigError(f"{key}: {value} must be at least 1")
    if rlhf.epsilon <= 0 or (rlhf.epsilon_high is not None and rlhf.epsilon_high <= 0):
        raise ConfigError("epsilon and epsilon_high must be positive (the clipping range of the importance ratio)")
    if cfg.generate.do_sample and cfg.generate.temperature <= 0:
        raise ConfigError(f"temperature: {cfg.generate.temperature} must be positive when sampling")


def check_vllm(rlhf: RlhfArgs) -> None:
    if not rlhf.use_vllm:
        return
    if runtime().device != "cuda":
        raise ConfigError(f"use_vllm: vLLM generates on CUDA GPUs only, and this machine trains on "
                          f"{runtime().device}; remove use_vllm (rollouts then use HF generate, batched with the KV "
                          "cache, on any device)")
    raise ConfigError(f"use_vllm (vllm_mode: {rlhf.vllm_mode}) is not available in tuneforge's GRPO loop yet; remove "
                      "use_vllm: rollouts use HF generate, batched with the KV cache")


def check_solution_columns(data: DataArgs) -> None:
    """`accuracy` compares with each row's answer: a dataset whose definition has no answer column is refused
    here, before anything loads (rows of other formats are checked by check_solutions once read)."""
    from ....data.registry import get_dataset_attrs

    for attr in get_dataset_attrs(data.dataset, data.dataset_dir):
        if attr.formatting == "alpaca" and not attr.columns.response:
            raise ConfigError(f"reward_funcs: accuracy compares completions with each row's solution, and dataset "
                              f"'{attr.name}' has no answer column ({attr.where} sets columns without "
                              "`response`); name its solution column as `response` in columns")


def check_solutions(rlhf: RlhfArgs, rows: list[PromptRow]) -> None:
    if "accuracy" not in (rlhf.reward_funcs or []):
        return
    missing = [row.index for row in rows if not row.solution]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise ConfigError(f"reward_funcs: accuracy needs a solution for every prompt, and {len(missing)} rows have "
                          f"none (dataset rows {shown}); give each row its answer (alpaca `output`, the assistant "
                          "turn of a conversation, or a `solution` column)")
