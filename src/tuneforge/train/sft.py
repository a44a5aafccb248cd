"""Recipe: supervised fine-tuning (stage sft). Prompts are masked; the assistant turns are trained.

Skeleton shared by every recipe: prepare -> run directory -> data -> model -> trainer -> train & save
-> evaluate.
"""

from __future__ import annotations

from typing import Any

from ..data.collator import SFTCollator
from ..data.pipeline import get_dataset, load_tokenizer_and_template
from ..data.schema import IGNORE_INDEX
from ..model.loader import load_model
from .run_dir import RunDirectory
from .trainer import build_trainer, compute_dtype_of, evaluate, prepare_run, train_and_save


def run_sft(cfg: Any) -> dict[str, float]:
    cfg, args, resume_from = prepare_run(cfg)
    with RunDirectory(cfg, args.output_dir, resume_from, training=args.do_train):
        tokenizer, template = load_tokenizer_and_template(cfg)
        dataset = get_dataset(cfg, tokenizer, template, stage="sft")
        model = load_model(cfg, tokenizer, is_trainable=args.do_train)
        collator = SFTCollator(
            pad_token_id=tokenizer.pad_token_id,
            label_pad_token_id=IGNORE_INDEX if getattr(cfg, "ignore_pad_token_for_loss", True)
            else tokenizer.pad_token_id,
            pad_to_multiple_of=8 if args.do_train else None,  # as LLaMA-Factory: tensor-core friendly shapes
            block_diag_attn=bool(getattr(cfg, "neat_packing", False)),
            attn_implementation=model.config._attn_implementation,
            compute_dtype=compute_dtype_of(cfg),
            media_plugin=getattr(template, "media_plugin", None),  # pixel inputs for image rows
        )
        trainer = build_trainer(cfg, args, model, tokenizer, collator, dataset)

        metrics: dict[str, float] = {}
        if args.do_train:
            metrics.update(train_and_save(trainer, cfg, resume_from))
        if args.do_eval:
            metrics.update(evaluate(trainer, with_perplexity=False))
    return metrics
