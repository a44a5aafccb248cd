"""Recipe: direct preference optimisation (stage dpo) and its loss family.

Same skeleton as sft.py. Each batch holds n chosen rows then n rejected rows (PairwiseCollator); one
forward pass of the policy scores all 2n answers, one no-grad pass of the reference (see reference.py)
scores them again, and preference/losses.py turns the per-answer log-probs into the loss:
`pref_loss` sigmoid | hinge | ipo | kto_pair (reference needed) or orpo | simpo (reference-free),
plus `pref_bco_weight` x BCO and `pref_ftx` x the chosen answers' SFT loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ...data.collator import MEDIA_INPUTS, PairwiseCollator
from ...data.pipeline import get_dataset, load_tokenizer_and_template
from ...model.loader import load_model
from ..preference import losses as losses
from ..preference.trainer import PreferenceTrainer, answer_token_stats
from ..preference.reference import load_reference_model, reference_context
from ..run.run_dir import RunDirectory
from ..trainer import build_trainer, compute_dtype_of, evaluate, prepare_run, train_and_save

if TYPE_CHECKING:
    from ...config import Config
    from ...config.groups import RlhfArgs

DPO_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
               "logps/rejected", "logits/chosen", "logits/rejected", "sft_loss", "odds_ratio_loss")
PLOT_KEYS = ("loss", "rewards/accuracies", "eval_loss")  # with plot_loss: LLaMA-Factory's curves for this stage


class DPOTrainer(PreferenceTrainer):
    METRICS = DPO_METRICS

    def __init__(self, *args: Any, rlhf: RlhfArgs, ref_model: torch.nn.Module | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.loss_type = rlhf.pref_loss
        self.beta = rlhf.pref_beta
        self.ftx = rlhf.pref_ftx
        self.bco_weight = rlhf.pref_bco_weight
        self.label_smoothing = rlhf.dpo_label_smoothing
        self.simpo_gamma = rlhf.simpo_gamma
        self.ld_alpha = rlhf.ld_alpha
        self.bco_baseline = losses.RunningMean()
        if ref_model is not None:
            self.ref_model = self.accelerator.prepare_model(ref_model, evaluation_mode=True)
            self.ref_model.eval()

    def answer_logps(self, model: torch.nn.Module, inputs: dict[str, Any],
                     is_reference: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(per-answer log-probs, per-answer mean logits, answer lengths) for the 2n rows of the batch."""
        stats = answer_token_stats(model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"],
                                   self.row_packer(), inputs.get(MEDIA_INPUTS))
        logps, lengths = losses.summed_logps(stats.token_logps, stats.labels,
                                             ld_alpha=None if is_reference else self.ld_alpha)
        if self.loss_type in losses.LENGTH_AVERAGED_LOSSES:
            logps = logps / lengths
        # Mean logit over the positions scored (LLaMA-Factory: over all positions); vocab summed first, so
        # no second logits-sized tensor is made.
        mask = stats.attention_mask
        mean_logits = (stats.logit_sums * mask).sum(-1) / (mask.sum(-1) * stats.vocab_size)
        return logps, mean_logits, lengths

    def preference_loss(self, model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        logps, mean_logits, lengths = self.answer_logps(model, inputs)
        chosen, rejected = logps.chunk(2)
        if self.loss_type == "orpo":
            per_pair = losses.orpo_losses(chosen, rejected, self.beta)
            chosen_rewards, rejected_rewards = self.beta * chosen.detach(), self.beta * rejected.detach()
            self.record("sft_loss", -chosen)
            self.record("odds_ratio_loss", (per_pair + chosen) / self.beta)
        elif self.loss_type == "simpo":
            per_pair = losses.simpo_losses(chosen, rejected, self.beta, self.simpo_gamma)
            chosen_rewards, rejected_rewards = self.beta * chosen.detach(), self.beta * rejected.detach()
        else:
            ref_chosen, ref_rejected = self.reference_logps(model, inputs)
            per_pair, chosen_rewards, rejected_rewards = losses.dpo_losses(
                chosen, rejected, ref_chosen, ref_rejected, self.loss_type, self.beta, self.label_smoothing)
        loss = per_pair.mean()
        if self.loss_type not in losses.REFERENCE_FREE_LOSSES and self.bco_weight > 1e-6:
            self.bco_baseline.update(float(torch.cat((chosen_rewards, rejected_rewards)).mean()))
            bco = losses.bco_losses(chosen, rejected, ref_chosen, ref_rejected, self.beta, self.bco_baseline.mean)
            # Means mixed (not per pair): kto_pair has one loss per answer, BCO one per pair.
            loss = (loss + self.bco_weight * bco.mean()) / (1 + self.bco_weight)
        if self.ftx > 1e-6:  # the SFT loss of the chosen answers, per token
            chosen_lengths = lengths.chunk(2)[0]
            chosen_avg = chosen if self.loss_type in losses.LENGTH_AVERAGED_LOSSES else chosen / chosen_lengths
            loss = loss + self.ftx * (-chosen_avg).mean()

        self.record("rewards/chosen", chosen_rewards)
        self.record("rewards/rejected", rejected_rewards)
        self.record("rewards/accuracies", (chosen_rewards > rejected_rewards).float())
        self.record("rewards/margins", chosen_rewards - rejected_rewards)
        self.record("logps/chosen", chosen)
        self.record("logps/rejected", rejected)
        chosen_logits, rejected_logits = mean_logits.chunk(2)
        self.record("logits/chosen", chosen_logits)
        self.record("logits/rejected", rejected_logits)
        return loss

    def reference_logps(self, model: torch.nn.Module, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        ref, context = reference_context(self.accelerator.unwrap_model(model), self.ref_model)
        with torch.no_grad(), context:
            logps, _, _ = self.answer_logps(ref, inputs, is_reference=True)
        chosen, rejected = logps.chunk(2)
        return chosen, rejected


def run_dpo(cfg: Config) -> dict[str, float]:
    cfg, args, resume_from = prepare_run(cfg)
    with RunDirectory(cfg, cfg.train.output_dir, resume_from, training=args.do_train):
        tokenizer, template = load_tokenizer_and_template(cfg)
        dataset = get_dataset(cfg, tokenizer, template, stage="dpo")
        model: Any = load_model(cfg, tokenizer, is_trainable=args.do_train)
        ref_model = load_reference_model(cfg, tokenizer)
        collator = PairwiseCollator(
            pad_token_id=tokenizer.pad_token_id,
            pad_to_multiple_of=8,
            attn_implementation=model.config._attn_implementation,
            compute_dtype=compute_dtype_of(cfg),
            media_plugin=getattr(template, "media_plugin", None),  # the same media for chosen and rejected
        )
        trainer = build_trainer(cfg, args, model, tokenizer, collator, dataset, trainer_class=DPOTrainer,
                                rlhf=cfg.rlhf, ref_model=ref_model)

        metrics: dict[str, float] = {}
        if args.do_train:
            metrics.update(train_and_save(trainer, cfg, resume_from, plot_keys=PLOT_KEYS))
        if args.do_eval:
            metrics.update(evaluate(trainer, with_perplexity=False))
    return metrics
