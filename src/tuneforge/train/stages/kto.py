"""Recipe: Kahneman-Tversky optimisation (stage kto) on unpaired desirable / undesirable answers.

Same skeleton as sft.py. A batch (KTOCollator) holds each row's answer with its `kto_tags` (desirable or
not) and a mismatched "KL" row: the same prompt with another row's answer (built by the KTO processor).
The policy scores the answers with gradients and the KL rows without; the reference (see reference.py)
scores both; preference/losses.py kto_losses weighs desirable rows by `kto_chosen_weight`, undesirable ones
by `kto_rejected_weight`. `pref_ftx` adds the desirable answers' SFT loss as LLaMA-Factory does
(rescaled by rows / desirable rows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ...data.collator import KL_MEDIA_INPUTS, MEDIA_INPUTS, KTOCollator
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

KTO_METRICS = ("rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected", "kl")
PLOT_KEYS = ("loss", "rewards/chosen", "eval_loss")  # with plot_loss: LLaMA-Factory's curves for this stage


class KTOTrainer(PreferenceTrainer):
    METRICS = KTO_METRICS

    def __init__(self, *args: Any, rlhf: RlhfArgs, ref_model: torch.nn.Module | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.beta = rlhf.pref_beta
        self.ftx = rlhf.pref_ftx
        self.chosen_weight = rlhf.kto_chosen_weight
        self.rejected_weight = rlhf.kto_rejected_weight
        if ref_model is not None:
            self.ref_model = self.accelerator.prepare_model(ref_model, evaluation_mode=True)
            self.ref_model.eval()

    def _logps(self, model: torch.nn.Module, inputs: dict[str, Any],
               prefix: str = "") -> tuple[torch.Tensor, torch.Tensor]:
        stats = answer_token_stats(model, inputs[f"{prefix}input_ids"], inputs[f"{prefix}attention_mask"],
                                   inputs[f"{prefix}labels"], self.row_packer(),
                                   inputs.get(KL_MEDIA_INPUTS if prefix else MEDIA_INPUTS))
        return losses.summed_logps(stats.token_logps, stats.labels)

    def preference_loss(self, model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        tags = inputs["kto_tags"].bool()
        logps, lengths = self._logps(model, inputs)
        with torch.no_grad():
            kl_logps, _ = self._logps(model, inputs, prefix="kl_")
            ref, context = reference_context(self.accelerator.unwrap_model(model), self.ref_model)
            with context:
                ref_logps, _ = self._logps(ref, inputs)
                ref_kl_logps, _ = self._logps(ref, inputs, prefix="kl_")

        per_row, chosen_rewards, rejected_rewards, kl = losses.kto_losses(
            logps[tags], logps[~tags], kl_logps, ref_logps[tags], ref_logps[~tags], ref_kl_logps,
            beta=self.beta, chosen_weight=self.chosen_weight, rejected_weight=self.rejected_weight)
        loss = per_row.nanmean()
        if self.ftx > 1e-6 and tags.any():
            chosen_avg = logps[tags] / lengths[tags]
            loss = loss + self.ftx * (-chosen_avg).nanmean() * len(tags) / int(tags.sum())

        self.record("rewards/chosen", chosen_rewards)
        self.record("rewards/rejected", rejected_rewards)
        self.record("logps/chosen", logps[tags])
        self.record("logps/rejected", logps[~tags])
        self.record("kl", kl)
        return loss


def run_kto(cfg: Config) -> dict[str, float]:
    cfg, args, resume_from = prepare_run(cfg)
    with RunDirectory(cfg, cfg.train.output_dir, resume_from, training=args.do_train):
        tokenizer, template = load_tokenizer_and_template(cfg)
        dataset = get_dataset(cfg, tokenizer, template, stage="kto")
        model: Any = load_model(cfg, tokenizer, is_trainable=args.do_train)
        ref_model = load_reference_model(cfg, tokenizer)
        collator = KTOCollator(
            pad_token_id=tokenizer.pad_token_id,
            pad_to_multiple_of=8,
            attn_implementation=model.config._attn_implementation,
            compute_dtype=compute_dtype_of(cfg),
            media_plugin=getattr(template, "media_plugin", None),  # rows and KL rows both see the row's media
        )
        trainer = build_trainer(cfg, args, model, tokenizer, collator, dataset, trainer_class=KTOTrainer,
                                rlhf=cfg.rlhf, ref_model=ref_model)

        metrics: dict[str, float] = {}
        if args.do_train:
            metrics.update(train_and_save(trainer, cfg, resume_from, plot_keys=PLOT_KEYS))
        if args.do_eval:
            metrics.update(evaluate(trainer, with_perplexity=False))
    return metrics
