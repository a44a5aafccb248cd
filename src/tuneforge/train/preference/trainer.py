"""The shared trainer for rm / dpo / kto: our TuneforgeTrainer with a loss of its own and per-row metrics.

Why not trl's DPOTrainer / KTOTrainer / RewardTrainer: they tokenize and collate their own way (and
ORPO/SimPO live only in trl.experimental), while our data pipeline already produces LLaMA-Factory's
pairwise/KTO batches; owning `compute_loss` (a few lines per stage, the formulas in
losses.py) keeps one pipeline, our atomic checkpoints and resume, and no trl dependency.

Metrics (rewards/chosen, logps/rejected, ...) are accumulated as sums and counts over rows between two
logging steps, so the logged value is the exact mean over the rows seen (KTO batches hold varying
numbers of chosen and rejected rows). Training metrics are logged beside `loss`, evaluation ones with
the `eval_` prefix beside `eval_loss`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, NamedTuple

import torch

from ...data.schema import IGNORE_INDEX
from . import losses as losses
from ..batching.padding_free_rows import RowPacker, accepts_logits_to_keep, row_packer, unpack
from ..trainer import TuneforgeTrainer


class PreferenceTrainer(TuneforgeTrainer):
    """Subclasses implement `preference_loss(model, inputs) -> loss` and call `record(name, values)`."""

    # Metric names in a fixed order, so that ranks can sum them elementwise under DDP.
    METRICS: tuple[str, ...] = ()
    # The separate frozen reference model of dpo / kto (None: none, or the policy with its adapter off).
    ref_model: torch.nn.Module | None = None

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Our loss is a mean over the batch: the Trainer scales it for gradient accumulation itself.
        self.model_accepts_loss_kwargs = False
        self._metric_sums: dict[str, dict[str, list[float]]] = {"train": defaultdict(lambda: [0.0, 0.0]),
                                                                  "eval": defaultdict(lambda: [0.0, 0.0])}

    # --- metrics ----------------------------------------------------------------------------------

    def record(self, name: str, values: torch.Tensor) -> None:
        """Add per-row values (or one scalar counted once) to the running sums of metric `name`."""
        values = values.detach().float().reshape(-1)
        if values.numel() == 0:
            return
        assert self.model is not None, "the trainer holds its model from __init__ on"
        split = "train" if self.model.training else "eval"
        entry = self._metric_sums[split][name]
        entry[0] += float(values.sum())
        entry[1] += values.numel()

    def _pop_metrics(self, split: str) -> dict[str, float]:
        sums = self._metric_sums[split]
        names = list(self.METRICS) + sorted(set(sums) - set(self.METRICS))
        totals = torch.tensor([sums[name] if name in sums else [0.0, 0.0] for name in names],
                              dtype=torch.float64)
        sums.clear()
        if self.accelerator.num_processes > 1:
            totals = self.accelerator.reduce(totals.to(self.accelerator.device), "sum").cpu()
        return {name: float(total / count) for name, (total, count) in zip(names, totals.tolist()) if count > 0}

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        # Mutating `logs` in place also puts the eval metrics into what evaluate() returns.
        if "loss" in logs:
            logs.update(self._finish(self._pop_metrics("train")))
        elif "eval_loss" in logs:
            logs.update({f"eval_{name}": value for name, value in self._finish(self._pop_metrics("eval")).items()})
        super().log(logs, *args, **kwargs)

    def _finish(self, metrics: dict[str, float]) -> dict[str, float]:
        """Derived metrics; the margin is chosen - rejected of the two means (KTO has unpaired rows)."""
        if "rewards/chosen" in metrics and "rewards/rejected" in metrics and "rewards/margins" not in metrics:
            metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"]
        return metrics

    # --- padding-free rows ------------------------------------------------------------------------

    # Whether the stage's outputs come from the LM head (dpo, kto) or from a value head (rm).
    SCORES_LOGITS = True

    def row_packer(self) -> RowPacker | None:
        """The padding-free runner of this run's batches (None: padded), set up and checked on first use,
        when the recipe's reference model and run config are in place."""
        if not hasattr(self, "_row_packer"):
            assert self.model is not None, "the trainer holds its model from __init__ on"
            assert self.run_config is not None, "build_trainer sets the run's config"
            others = () if self.ref_model is None else (self.ref_model,)
            self._row_packer = row_packer(self.model, self.run_config,
                                          self.score_rows, lm_head=self.SCORES_LOGITS,
                                          other_models=tuple(self.accelerator.unwrap_model(m) for m in others))
        return self._row_packer

    def score_rows(self, model: torch.nn.Module, inputs: dict[str, Any],
                   packer: RowPacker | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(model outputs, mask of the positions read) of a padded batch; the padding-free check compares them."""
        stats = answer_token_stats(model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"], packer)
        return stats.token_logps, stats.labels[:, 1:] != IGNORE_INDEX

    # --- loss -------------------------------------------------------------------------------------

    def preference_loss(self, model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        loss = self.preference_loss(model, inputs)
        return (loss, None) if return_outputs else loss

    def prediction_step(self, model: torch.nn.Module, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None, **gen_kwargs: Any) -> tuple[Any, None, None]:
        """Evaluation computes the stage's loss and records its metrics; no logits are gathered.

        The loss is a tensor, which the evaluation loop gathers (Seq2SeqTrainer annotates it as a float)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.preference_loss(model, inputs)
        return loss.detach(), None, None


class AnswerStats(NamedTuple):
    """Per-position results of a padded batch from column `start` on (what the losses and metrics read)."""

    token_logps: torch.Tensor  # (rows, n - 1): log p(next label), 0 where the label is -100
    logit_sums: torch.Tensor  # (rows, n): logits summed over the vocabulary, detached
    labels: torch.Tensor  # (rows, n)
    attention_mask: torch.Tensor  # (rows, n)
    vocab_size: int


def answer_token_stats(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       labels: torch.Tensor, packer: RowPacker | None = None,
                       media_inputs: dict[str, Any] | None = None) -> AnswerStats:
    """`answer_logits` reduced to what the losses read; with a `packer` the rows run padding-free where that
    is cheaper (padding_free_rows.py), and the log-softmax sees only the real positions. `media_inputs` (the
    media plugin's batch_inputs for these rows, see data/collator.py) go to the model with the ids; such a
    batch always runs padded, because the media inputs are laid out against the padded rows."""
    start = _answer_start(labels)
    packed = None
    if packer is not None and not media_inputs:
        packed = packer.run(model, input_ids, attention_mask, start, use_cache=False)
    if packed is None:
        logits, labels, mask = answer_logits(model, input_ids, attention_mask, labels, media_inputs)
        return AnswerStats(losses.token_logps(logits, labels), logits.detach().sum(-1), labels, mask,
                           logits.size(-1))
    outputs, row, column = packed
    logits, column = outputs.logits[0], column - start
    labels, mask = labels[:, start:], attention_mask[:, start:]
    # Position c predicts label c + 1 of its row; a row's last column predicts nothing.
    scored = column < labels.size(1) - 1
    targets = labels[row[scored], column[scored] + 1]
    has_target = targets != IGNORE_INDEX
    logps = losses.target_logps(logits[scored], targets.masked_fill(~has_target, 0)) * has_target
    shape = (labels.size(0), labels.size(1) - 1)
    return AnswerStats(unpack(logps, row[scored], column[scored], shape),
                       unpack(logits.detach().sum(-1), row, column, (labels.size(0), labels.size(1))), labels, mask,
                       logits.size(-1))


def answer_logits(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  labels: torch.Tensor, media_inputs: dict[str, Any] | None = None,
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits, labels, attention mask) from the position before the batch's earliest answer token on.

    Only answer tokens enter the log-probs, so the LM head skips the prompt positions every row shares
    (`logits_to_keep`, counted from the end of the right-padded rows): on short answers to long prompts
    that is most of the LM head's work. The returned labels and mask are cut to the same positions, so
    `sequence_logps(logits, labels)` pairs them as on the full rows.
    """
    start = _answer_start(labels)
    kwargs = {"logits_to_keep": input_ids.size(1) - start} if start and accepts_logits_to_keep(model) else {}
    if not kwargs:
        start = 0
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs,
                   **(media_inputs or {})).logits
    return logits, labels[:, start:], attention_mask[:, start:]


def _answer_start(labels: torch.Tensor) -> int:
    """The column before the batch's earliest answer token: the first whose logits the losses read."""
    answer = labels != IGNORE_INDEX
    first = int(answer.int().argmax(-1)[answer.any(-1)].min()) if answer.any() else 1
    return max(first - 1, 0)
