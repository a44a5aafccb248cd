"""Per-stage tokenization: canonical rows in, model inputs with LLaMA-Factory's column names out.

    stage pt                      -> pt.PretrainProcessor             input_ids, attention_mask
    stage sft                     -> sft.SupervisedProcessor          input_ids, attention_mask, labels
    stage sft + packing           -> sft_packed.PackedSupervisedProcessor  (+ position_ids, packing_params)
    stage rm / dpo                -> pairwise.PairwiseProcessor       chosen_* / rejected_*
    stage kto                     -> kto.KTOProcessor                 + kl_*, kto_tags
    stage ppo, sft generation     -> unsupervised.UnsupervisedProcessor
"""

from __future__ import annotations

from typing import Any

from .common import ProcessingOptions, infer_seqlen
from .kto import KTOProcessor
from .pairwise import PairwiseProcessor
from .pt import PretrainProcessor
from .sft import SupervisedProcessor
from .sft_packed import PackedSupervisedProcessor
from .unsupervised import UnsupervisedProcessor

PAIRWISE_STAGES = ("rm", "dpo")

__all__ = ["ProcessingOptions", "infer_seqlen", "get_processor", "KTOProcessor", "PairwiseProcessor",
           "PretrainProcessor", "SupervisedProcessor", "PackedSupervisedProcessor", "UnsupervisedProcessor"]


Processor = (PretrainProcessor | SupervisedProcessor | PackedSupervisedProcessor | PairwiseProcessor | KTOProcessor
             | UnsupervisedProcessor)


def get_processor(stage: str, template: Any, tokenizer: Any, options: ProcessingOptions,
                  do_generate: bool = False) -> Processor:
    """The processor LLaMA-Factory would pick for `stage` (`do_generate`: sft evaluation by generation)."""
    cls: type[Processor]
    if stage == "pt":
        cls = PretrainProcessor
    elif stage == "sft" and not do_generate:
        cls = PackedSupervisedProcessor if options.packing else SupervisedProcessor
    elif stage in PAIRWISE_STAGES:
        cls = PairwiseProcessor
    elif stage == "kto":
        cls = KTOProcessor
    else:
        cls = UnsupervisedProcessor
    return cls(template, tokenizer, options)
