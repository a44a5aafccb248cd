"""Recipe: pre-training / continued pre-training (stage pt). Every token of the text is trained.

Same skeleton as sft.py; the differences are the stage's data (packed text blocks), no pad-to-multiple
(blocks already share one length) and perplexity in the eval metrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...data.collator import SFTCollator
from ...data.pipeline import get_dataset, load_tokenizer_and_template
from ...model.loader import load_model
from ..run.run_dir import RunDirectory
from ..trainer import build_trainer, compute_dtype_of, evaluate, prepare_run, train_and_save

if TYPE_CHECKING:
    from ...config import Config


def run_pt(cfg: Config) -> dict[str, float]:
    cfg, args, resume_from = prepare_run(cfg)
    with RunDirectory(cfg, cfg.train.output_dir, resume_from, training=args.do_train):
        tokenizer, template = load_tokenizer_and_template(cfg)
        dataset = get_dataset(cfg, tokenizer, template, stage="pt")
        model: Any = load_model(cfg, tokenizer, is_trainable=args.do_train)
        # Rows carry no labels: the collator trains on input_ids, with padding masked out.
        collator = SFTCollator(
            pad_token_id=tokenizer.pad_token_id,
            block_diag_attn=cfg.data.neat_packing,
            attn_implementation=model.config._attn_implementation,
            compute_dtype=compute_dtype_of(cfg),
        )
        trainer = build_trainer(cfg, args, model, tokenizer, collator, dataset)

        metrics: dict[str, float] = {}
        if args.do_train:
            metrics.update(train_and_save(trainer, cfg, resume_from))
        if args.do_eval:
            metrics.update(evaluate(trainer, with_perplexity=True))
    return metrics
