"""Recipe: pairwise reward modelling (stage rm).

Same skeleton as sft.py. The model is the causal LM plus a scalar value head (model/value_head.py); a
pair's score is the head's value at the last real token of each answer, and the loss is
-log sigmoid(chosen score - rejected score). The run saves the model or adapter as usual plus
`value_head.safetensors`, which `model.value_head.load_value_head_model` (and PPO) read back. Evaluation reports the
pairwise accuracy (share of pairs scored chosen > rejected) as `eval_accuracy`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch
from transformers.trainer import TRAINING_ARGS_NAME

from ...data.collator import PairwiseCollator
from ...data.pipeline import get_dataset, load_tokenizer_and_template
from ...model.value_head import last_token_values, load_value_head, load_value_head_model
from ..preference.losses import pairwise_reward_loss
from ..preference.trainer import PreferenceTrainer
from ..run.run_dir import RunDirectory
from ..trainer import build_trainer, compute_dtype_of, evaluate, prepare_run, train_and_save

if TYPE_CHECKING:
    from ...config import Config

RM_METRICS = ("accuracy", "rewards/chosen", "rewards/rejected")
PLOT_KEYS = ("loss", "eval_loss", "eval_accuracy")  # with plot_loss: LLaMA-Factory's curves for this stage


class RewardTrainer(PreferenceTrainer):
    METRICS = RM_METRICS

    SCORES_LOGITS = False

    def score_rows(self, model: torch.nn.Module, inputs: dict[str, Any],
                   packer: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(values per position, attention mask): padded, or padding-free where `packer` runs the batch."""
        values = packer.values(model, inputs["input_ids"], inputs["attention_mask"]) if packer is not None else None
        if values is None:
            values = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        return values, inputs["attention_mask"]

    def preference_loss(self, model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        values, _ = self.score_rows(model, inputs, self.row_packer())
        chosen, rejected = last_token_values(values, inputs["attention_mask"]).chunk(2)
        self.record("accuracy", (chosen > rejected).float())
        self.record("rewards/chosen", chosen)
        self.record("rewards/rejected", rejected)
        return pairwise_reward_loss(chosen, rejected).mean()

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        # HF saves a non-PreTrainedModel as one flat state dict; ours saves the decoder (or adapter) the
        # usual way and the head beside it, LLaMA-Factory's layout.
        output_dir = output_dir or self.args.output_dir
        assert output_dir is not None, "output_dir always has a value (config/loader.py resolves it)"
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        # state_dict: the weights DeepSpeed gathered (ZeRO-3 leaves the parameters here empty); None otherwise.
        self.accelerator.unwrap_model(self.model).save_pretrained(output_dir, state_dict=state_dict)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        wrapper = self.accelerator.unwrap_model(model or self.model)
        super()._load_from_checkpoint(resume_from_checkpoint, model=wrapper.pretrained_model)
        load_value_head(wrapper, resume_from_checkpoint)


def run_rm(cfg: Config) -> dict[str, float]:
    cfg, args, resume_from = prepare_run(cfg)
    with RunDirectory(cfg, cfg.train.output_dir, resume_from, training=args.do_train):
        tokenizer, template = load_tokenizer_and_template(cfg)
        dataset = get_dataset(cfg, tokenizer, template, stage="rm")
        model: Any = load_value_head_model(cfg, tokenizer, is_trainable=args.do_train)
        collator = PairwiseCollator(
            pad_token_id=tokenizer.pad_token_id,
            pad_to_multiple_of=8,
            attn_implementation=model.config._attn_implementation,
            compute_dtype=compute_dtype_of(cfg),
        )
        trainer = build_trainer(cfg, args, model, tokenizer, collator, dataset, trainer_class=RewardTrainer)

        metrics: dict[str, float] = {}
        if args.do_train:
            metrics.update(train_and_save(trainer, cfg, resume_from, plot_keys=PLOT_KEYS))
        if args.do_eval:
            metrics.update(evaluate(trainer, with_perplexity=False))
    return metrics
