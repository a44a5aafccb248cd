"""The trainer every recipe shares: HF Seq2SeqTrainer plus atomic checkpoints and seeded length grouping.

Recipes (pt.py, sft.py, ...) differ in their data and collator; everything about how a run trains,
saves, resumes and reports lives here, so each recipe reads as:
    prepare_run -> RunDirectory -> data -> load_model -> build_trainer -> train_and_save -> evaluate
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from typing import TYPE_CHECKING, Any

import torch
from transformers import Seq2SeqTrainer, set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..config import Config
from ..data.tokenizer import save_tokenizer_with_chat_template
from ..errors import ConfigError
from ..model.loader import preflight_model, resolve_compute_dtype, training_device, with_local_model
from .args import run_training_arguments
from .batching.padding_free import is_padding_free_batch, padding_free_collator
from .deepspeed_import import defer_deepspeed_import
from .evaluation.predict import check_prediction
from .fp8 import Fp8Plan, accelerator_fp8_kwargs, gpu_facts, plan_fp8
from .launch.distributed import join_process_group
from .launch.sequence_parallel import shardable_batches
from .lf_switches import apply_switches, effective_tokens_per_second
from .memory_estimate import report_memory_estimate
from .optim.optimizers import (adapt_trainer_to_optimizer, check_optimizer_setup, create_custom_optimizer,
                               create_custom_scheduler)
from .run.callbacks import HangWatchdogCallback, RunLogCallback
from .run.checkpoints import STAGING_DIR, clear_staging, publish_checkpoint, retire_checkpoints
from .run.disk_full import (DiskFull, disk_full_error, is_disk_full, last_complete_checkpoint, ranks_where,
                             results_disk_full_error, tree_size, write_then_vote)
from .run.loggers import attach_loggers
from .run.divergence import DivergenceGuard, first_nonfinite_parameter
from .run.interrupt import report_interrupted, stop_gracefully_on_sigint
from .run.pissa import PissaConvertCallback
from .run.plot import check_plotting_available, plot_loss
from .run.sample_trace import trace_samples
from .run.watchdog import HangWatchdog, distributed_watchdog
from .sft_losses import TokenLoss, next_token_targets, sft_token_loss

if TYPE_CHECKING:
    from transformers import Seq2SeqTrainingArguments

logger = logging.getLogger("tuneforge.train")


def prepare_run(cfg: Config) -> tuple[Config, Seq2SeqTrainingArguments, str | None]:
    """Checks that must pass before any data or weights load; returns (cfg, training args, resume path).

    The resume path was settled when the config loaded (config/resume.py)."""
    args = run_training_arguments(cfg)
    if not (args.do_train or args.do_eval or args.do_predict):
        raise ConfigError("nothing to do: set do_train: true to train (and/or do_eval / do_predict: true)")
    check_prediction(cfg, args)  # do_predict / predict_with_generate (train/predict.py)
    join_process_group(args)  # before the data: rank 0 preprocesses while the others wait (data/rank_gate.py)
    if cfg.method.plot_loss and args.do_train:
        check_plotting_available()
    check_optimizer_setup(cfg, args)
    plan_fp8(cfg.train, gpu_facts())  # refuses FP8 on hardware without it, before the weights load
    resume_from: str | None = cfg.train.resume_from_checkpoint if args.do_train else None
    cfg = with_local_model(cfg)
    preflight_model(cfg, is_trainable=args.do_train)
    set_seed(args.seed)  # before the model loads: LoRA initialisation draws from the global RNG
    return cfg, args, resume_from


def compute_dtype_of(cfg: Config) -> torch.dtype:
    return resolve_compute_dtype(cfg, training_device(cfg))


class TuneforgeTrainer(Seq2SeqTrainer):
    """Seq2SeqTrainer whose checkpoints appear atomically, whose length grouping is resumable and which
    stops a diverged run before NaN reaches the weights (run/divergence.py)."""

    _staging = False
    _divergence: DivergenceGuard | None = None
    # The run's Config (set by build_trainer): GaLore / APOLLO / BAdam / LoRA+ settings (see optimizers.py).
    run_config: Config | None = None
    # use_dft_loss / use_eaft_loss / use_asft_loss (sft_losses.py), set by build_trainer; None: the model's loss.
    token_loss: TokenLoss | None = None
    # ASFT's frozen reference model (None with LoRA: the policy with its adapter switched off).
    sft_reference: torch.nn.Module | None = None
    # Multi-process runs: reports a rank that stops making progress (run/watchdog.py); set by build_trainer.
    hang_watchdog: HangWatchdog | None = None

    def __init__(self, *args: Any, fp8: Fp8Plan | None = None, **kwargs: Any) -> None:
        self.fp8 = fp8  # read while the parent's __init__ builds the accelerator
        super().__init__(*args, **kwargs)

    def _build_accelerator_args(self, **kwargs: Any) -> dict[str, Any]:
        """fp8: accelerate's FP8 recipe for the planned backend (train/fp8.py)."""
        args = super()._build_accelerator_args(**kwargs)
        if self.fp8 is not None:
            args["mixed_precision"] = "fp8"
            args["kwargs_handlers"] = [*args.get("kwargs_handlers", []), accelerator_fp8_kwargs(self.fp8)]
        return args

    @property
    def run_dir(self) -> str:
        """args.output_dir, which the run's arguments always set (transformers types it optional)."""
        assert self.args.output_dir is not None, "run_training_arguments sets output_dir"
        return self.args.output_dir

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        if self.optimizer is None and self.run_config is not None:
            target = self.model if model is None else model
            assert target is not None, "the Trainer builds its optimizer for a model"
            self.optimizer = create_custom_optimizer(target, self.args, self.run_config)
        return super().create_optimizer(model)

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        result = self._compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.hang_watchdog is not None and model.training:
            self.hang_watchdog.forward_done()  # the backward's gradient all-reduce comes next
        return result

    def _maybe_log_save_evaluate(self, *args: Any, **kwargs: Any) -> None:
        # Evaluation and checkpoint saves take their own time, unrelated to the step time: not timed.
        with self.hang_watchdog.paused() if self.hang_watchdog is not None else contextlib.nullcontext():
            super()._maybe_log_save_evaluate(*args, **kwargs)

    def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool,
                      num_items_in_batch: Any) -> Any:
        if self.token_loss is None:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        inputs = dict(inputs)  # the eval loop reads the labels again afterwards
        labels = inputs.pop("labels")
        # A padding-free batch has logits only where a target is, and those targets as shift_labels.
        shift_labels = inputs.pop("shift_labels", None)
        targets = shift_labels if shift_labels is not None else next_token_targets(labels)
        outputs = model(**inputs)  # without labels: the model computes no loss of its own
        ref_logits = self._sft_reference_logits(model, inputs) if self.token_loss.needs_reference else None
        loss = self.token_loss(outputs.logits, targets, num_items_in_batch, ref_logits)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # num_items_in_batch counts every process's tokens
        return (loss, outputs) if return_outputs else loss

    def _sft_reference_logits(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        from .preference.reference import reference_context

        policy = self.accelerator.unwrap_model(model)
        reference, context = reference_context(policy, self.sft_reference)
        with torch.no_grad(), context:
            return reference(**inputs).logits

    def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
        if self.lr_scheduler is None:
            self.lr_scheduler = create_custom_scheduler(self.args, optimizer or self.optimizer, num_training_steps)
            self._created_lr_scheduler = self.lr_scheduler is not None  # rebuilt on the next train(), as HF's
        return super().create_scheduler(num_training_steps, optimizer)

    @property
    def divergence(self) -> DivergenceGuard:
        if self._divergence is None:
            self._divergence = DivergenceGuard(self.run_dir, self.args.learning_rate, fp16=self.args.fp16,
                                               any_rank=self._on_any_rank)
        return self._divergence

    def training_step(self, model: torch.nn.Module, inputs: dict[str, Any],
                      num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.divergence.observe_loss(loss)
        return loss

    def _get_grad_norm(self, model: Any, grad_norm: Any = None) -> Any:
        # Called once per optimizer step, after backward and clipping, before optimizer.step(): the last
        # moment a NaN step can be refused without touching the weights.
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        self.divergence.check_step(self.state.global_step + 1, self.state.max_steps, grad_norm, model)
        return grad_norm

    def check_weights_finite(self, model: Any, saving: str) -> None:
        """Raise TrainingDiverged instead of saving `saving` (what would be written) from NaN/inf weights."""
        bad = first_nonfinite_parameter(model)
        if self._on_any_rank(bad is not None):
            where = f" ({bad})" if bad else " on another rank"
            raise self.divergence.error(self.state.global_step, self.state.max_steps,
                                        f"the trained weights hold NaN or inf{where}; {saving} was not saved",
                                        first_bad_checkpoint=self.state.global_step)

    def _on_any_rank(self, flag: bool) -> bool:
        if self.accelerator.num_processes == 1:
            return flag
        votes = torch.tensor([float(flag)], device=self.accelerator.device)
        return bool(self.accelerator.reduce(votes, reduction="sum").item() > 0)

    def _get_output_dir(self, trial: Any) -> str:
        # While a checkpoint is written, the Trainer's "run dir" is the staging folder (see _save_checkpoint).
        if self._staging:
            return os.path.join(self.run_dir, STAGING_DIR)
        return super()._get_output_dir(trial)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        """Write checkpoint-N into output_dir/.staging, then rename it into output_dir in one step."""
        staging_root = os.path.join(self.run_dir, STAGING_DIR)
        staged = os.path.join(staging_root, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        self.check_weights_finite(model, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        # Every rank votes before the barrier: a rank whose disk filled must not leave the others waiting.
        failure, full_on = write_then_vote(lambda: self._write_staged_checkpoint(model, trial), self.ranks_where)
        if full_on:
            raise self._checkpoint_disk_full(staged, full_on) from failure
        self.accelerator.wait_for_everyone()  # every rank has written its shard before the rename
        if not self.args.should_save:
            return
        try:
            final = publish_checkpoint(staged, self.run_dir)
        except Exception as error:
            if not is_disk_full(error):
                raise
            raise self._checkpoint_disk_full(staged, [self.args.process_index]) from error
        if self.state.best_model_checkpoint and self.state.best_model_checkpoint.startswith(staging_root):
            self.state.best_model_checkpoint = final
            self.state.save_to_json(os.path.join(final, "trainer_state.json"))
        retire_checkpoints(self.run_dir, self.args.save_total_limit, self.state.best_model_checkpoint)

    def _write_staged_checkpoint(self, model: Any, trial: Any) -> None:
        self._staging = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging = False

    def ranks_where(self, flag: bool) -> list[int]:
        """The ranks on which `flag` is true (a collective: every rank calls it at the same point)."""
        return ranks_where(flag, self.accelerator.device)

    def _checkpoint_disk_full(self, staged: str, full_on: list[int]) -> DiskFull:
        """Remove the half-written checkpoint (the disk keeps only complete ones) and say what to do."""
        written = tree_size(staged)
        clear_staging(self.run_dir)
        previous = last_complete_checkpoint(self.run_dir)
        # The previous checkpoint holds the same files; without one, what was written is a lower bound.
        needed = tree_size(previous) if previous else written
        return disk_full_error(self.run_dir, os.path.basename(staged), needed, full_on, self.args.world_size)

    def _track_num_input_tokens(self, inputs: dict[str, Any]) -> None:
        # Every token of a padding-free row is real; HF would count `input_ids != pad_token_id`, which drops
        # real tokens wherever the pad token also ends a turn (eos used as pad).
        if is_padding_free_batch(inputs):
            inputs = {**inputs, "attention_mask": torch.ones_like(inputs["input_ids"])}
        super()._track_num_input_tokens(inputs)

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        if self.args.train_sampling_strategy != "group_by_length":
            return super()._get_train_sampler(train_dataset)
        dataset: Any = train_dataset if train_dataset is not None else self.train_dataset
        lengths = [len(ids) for ids in dataset["input_ids"]]
        return SeededLengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths=lengths,
            seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
        )


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped order drawn from (seed, epoch): a resumed run replays exactly the same batches.

    HF's sampler draws from the global RNG when the epoch starts, which a resume restores to a later
    state, so the resumed epoch would see another order.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed + epoch)


def build_trainer(cfg: Config, args: Seq2SeqTrainingArguments, model: Any, tokenizer: Any, collator: Any,
                  dataset: Any, trainer_class: type[TuneforgeTrainer] | None = None,
                  **kwargs: Any) -> TuneforgeTrainer:
    """The shared trainer (or a recipe's subclass of it) with our run-directory callback in place of HF's
    console printers, and padding-free batches where they give the padded batches' results (see
    padding_free.py)."""
    defer_deepspeed_import()  # start-up: no deepspeed import for the Trainer's unwrap check (see the module)
    trainer = (trainer_class or TuneforgeTrainer)(
        model=model,
        args=args,
        data_collator=shardable_batches(trace_samples(padding_free_collator(model, collator, cfg, args), cfg.train),
                                        cfg.train),  # sequence parallelism: position ids, padded to split
        train_dataset=dataset.train_dataset,
        eval_dataset=dataset.eval_dataset,
        processing_class=tokenizer,  # saved next to every checkpoint and the final model
        fp8=plan_fp8(cfg.train, gpu_facts()),
        **kwargs,
    )
    trainer.run_config = cfg
    trainer.token_loss = sft_token_loss(cfg.method) if cfg.method.stage == "sft" else None
    adapt_trainer_to_optimizer(trainer, cfg.badam)
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(RunLogCallback(trainer.run_dir, show_progress=not args.disable_tqdm))
    attach_loggers(trainer, cfg)  # SwanLab as configured, and the run's config to every logger
    if cfg.lora.pissa_convert:
        trainer.add_callback(PissaConvertCallback())
    trainer.hang_watchdog = distributed_watchdog(cfg.train.hang_watchdog_factor, cfg.train.hang_watchdog_min_s)
    if trainer.hang_watchdog is not None:
        trainer.add_callback(HangWatchdogCallback(trainer.hang_watchdog))
    apply_switches(trainer, cfg.train, cfg.method)  # logging_dir, early stopping, accuracy (lf_switches.py)
    return trainer


def train_and_save(trainer: TuneforgeTrainer, cfg: Config, resume_from: str | None,
                   plot_keys: tuple[str, ...] = ("loss", "eval_loss")) -> dict[str, float]:
    """Train, save the final model/adapter + tokenizer, write metrics and the curves of `plot_keys`."""
    if trainer.is_world_process_zero():
        report_memory_estimate(trainer.model, cfg, trainer.args)
    with stop_gracefully_on_sigint(trainer) as stop:  # Ctrl-C: checkpoint after this step, then stop
        result = trainer.train(resume_from_checkpoint=resume_from)
    if stop.stopped_at is not None and stop.stopped_at < trainer.state.max_steps:
        report_interrupted(trainer.run_dir, stop.stopped_at, trainer.state.max_steps)
        raise KeyboardInterrupt  # the CLI prints "interrupted" and exits 130; no final model is saved
    if cfg.method.include_effective_tokens_per_second:
        result.metrics["effective_tokens_per_sec"] = effective_tokens_per_second(trainer.train_dataset,
                                                                                 result.metrics)
    # Checkpointing turned the KV cache off for training; the saved model should generate with it.
    trainer.accelerator.unwrap_model(trainer.model).config.use_cache = True
    trainer.check_weights_finite(trainer.model, "the final model")
    save_final_model(trainer)
    trainer.log_metrics("train", result.metrics)
    save_results(trainer, result.metrics, plot_keys if cfg.method.plot_loss else None)
    return result.metrics


def save_final_model(trainer: TuneforgeTrainer) -> None:
    """The final model/adapter + tokenizer; a full disk (on any rank) removes the files this save created and
    raises DiskFull naming the last complete checkpoint, on every rank."""
    run_dir = trainer.run_dir
    existed = set(os.listdir(run_dir)) if os.path.isdir(run_dir) else set()

    def write() -> None:
        trainer.save_model()
        if trainer.is_world_process_zero() and trainer.processing_class is not None:
            save_tokenizer_with_chat_template(trainer.processing_class, run_dir)

    failure, full_on = write_then_vote(write, trainer.ranks_where)
    if not full_on:
        return
    if trainer.is_world_process_zero():
        _remove_new_files(run_dir, existed)
    previous = last_complete_checkpoint(run_dir)
    # The checkpoint's weight files are what the final save writes again.
    needed = sum(tree_size(os.path.join(previous, name)) for name in os.listdir(previous)
                 if name.startswith(("adapter_model", "model"))) if previous else None
    raise disk_full_error(run_dir, "the final model", needed, full_on, trainer.args.world_size) from failure


def save_results(trainer: TuneforgeTrainer, metrics: dict[str, float], plot_keys: tuple[str, ...] | None) -> None:
    """train_results.json, all_results.json, trainer_state.json (+ the loss plot) after the final model: a full
    disk there is a clear error too (on every rank), which says the model itself is complete."""

    def write() -> None:
        trainer.save_metrics("train", metrics)
        trainer.save_state()
        if trainer.is_world_process_zero() and plot_keys:
            plot_loss(trainer.run_dir, plot_keys)

    failure, full_on = write_then_vote(write, trainer.ranks_where)
    if full_on:
        plot = ", the loss plot" if plot_keys else ""
        raise results_disk_full_error(trainer.run_dir, "train_results.json, all_results.json, trainer_state.json"
                                      + plot) from failure


def _remove_new_files(run_dir: str, existed: set[str]) -> None:
    # Only files the failed save created: a half-written adapter must not look like the run's result.
    for name in set(os.listdir(run_dir)) - existed:
        path = os.path.join(run_dir, name)
        if os.path.isfile(path):
            os.remove(path)


def evaluate(trainer: TuneforgeTrainer, with_perplexity: bool) -> dict[str, float]:
    metrics = trainer.evaluate(metric_key_prefix="eval")
    if with_perplexity:
        for key in [k for k in metrics if k.endswith("_loss")]:
            try:
                metrics[key.replace("_loss", "_perplexity")] = math.exp(metrics[key])
            except OverflowError:
                metrics[key.replace("_loss", "_perplexity")] = float("inf")
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)
    return metrics
