"""Recipe: supervised fine-tuning (stage sft). Prompts are masked; the assistant turns are trained.

Skeleton shared by every recipe: prepare -> run directory -> data -> model -> trainer -> train & save
-> evaluate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...data.collator import SFTCollator
from ...data.pipeline import get_dataset, load_tokenizer_and_template
from ...data.schema import IGNORE_INDEX
from ...errors import ConfigError
from ...model.loader import load_model
from ..evaluation.predict import predict
from ..preference.reference import load_reference_model
from ..run.run_dir import RunDirectory
from ..trainer import build_trainer, compute_dtype_of, evaluate, prepare_run, train_and_save

if TYPE_CHECKING:
    from ...config import Config
    from ...config.groups import GenerateArgs, TrainArgs


def run_sft(cfg: Config) -> dict[str, float]:
    cfg, args, resume_from = prepare_run(cfg)
    with RunDirectory(cfg, cfg.train.output_dir, resume_from, training=args.do_train):
        tokenizer, template = load_tokenizer_and_template(cfg)
        dataset = get_dataset(cfg, tokenizer, template, stage="sft")
        model: Any = load_model(cfg, tokenizer, is_trainable=args.do_train)
        collator = SFTCollator(
            pad_token_id=tokenizer.pad_token_id,
            label_pad_token_id=IGNORE_INDEX if cfg.data.ignore_pad_token_for_loss else tokenizer.pad_token_id,
            pad_to_multiple_of=8 if args.do_train else None,  # as LLaMA-Factory: tensor-core friendly shapes
            block_diag_attn=cfg.data.neat_packing,
            attn_implementation=model.config._attn_implementation,
            compute_dtype=compute_dtype_of(cfg),
            media_plugin=getattr(template, "media_plugin", None),  # pixel inputs for image rows
        )
        trainer = build_trainer(cfg, args, model, tokenizer, collator, dataset)
        if cfg.method.use_asft_loss:
            use_asft_reference(trainer, load_reference_model(cfg, tokenizer))

        metrics: dict[str, float] = {}
        if args.do_train:
            metrics.update(train_and_save(trainer, cfg, resume_from))
        if args.do_eval and args.predict_with_generate:
            metrics.update(predict_and_save(trainer, cfg.generate, cfg.train, template, dataset, "eval"))
        elif args.do_eval:
            metrics.update(evaluate(trainer, with_perplexity=False))
        if args.do_predict:
            metrics.update(predict_and_save(trainer, cfg.generate, cfg.train, template, dataset, "predict"))
    return metrics


def use_asft_reference(trainer: Any, reference: Any) -> None:
    """ASFT's KL term compares with the starting model: `ref_model`, a frozen copy (full / freeze), or with
    LoRA and no ref_model the policy with its adapter off (reference stays None, see reference.py)."""
    if reference is not None:
        trainer.sft_reference = trainer.accelerator.prepare_model(reference, evaluation_mode=True)
        trainer.sft_reference.eval()


def predict_and_save(trainer: Any, generate: GenerateArgs, train: TrainArgs, template: Any, dataset: Any,
                     prefix: str) -> dict[str, float]:
    """Generate answers for the eval rows and score them (predict also writes generated_predictions.jsonl)."""
    if isinstance(dataset.eval_dataset, dict):
        raise ConfigError(f"do_{prefix} with predict_with_generate scores one eval dataset; set "
                          "eval_on_each_dataset: false")
    model = trainer.accelerator.unwrap_model(trainer.model)
    metrics = predict(model, trainer.processing_class, template, dataset.eval_dataset, generate, train,
                      prefix=prefix, write_file=prefix == "predict" and trainer.is_world_process_zero())
    trainer.log_metrics(prefix, metrics)
    trainer.save_metrics(prefix, metrics)
    return metrics
