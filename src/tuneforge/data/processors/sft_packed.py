"""Supervised rows packed into `cutoff_len`-long rows (`packing` / `neat_packing`, stage sft)."""

from __future__ import annotations

import logging

from ..packing import PackedExample, pack_examples
from .common import int_sequence, media_features
from .sft import SupervisedProcessor

logger = logging.getLogger(__name__)


class PackedSupervisedProcessor(SupervisedProcessor):
    """Encodes like SupervisedProcessor, then bins each batch's examples (see data/packing.py)."""

    @property
    def features(self):
        from datasets import Features, List, Value

        ids = int_sequence()
        features = {"input_ids": ids, "attention_mask": ids, "position_ids": ids, "labels": ids,
                    **media_features()}
        if self.options.neat_packing:
            features["packing_params"] = {
                "sequence_boundaries": ids,
                "image_subseq_ids": List(Value("int64")),
                "video_subseq_ids": List(Value("int64")),
                "audio_subseq_ids": List(Value("int64")),
                "right_padding_length": Value("int32"),
            }
        return Features(features)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        examples = []
        for input_ids, labels, i in self.encode_batch(batch):
            if len(input_ids) > self.options.cutoff_len:  # only multimodal tokens can overflow the budget
                logger.warning("dropped an example of length %d > cutoff_len %d", len(input_ids),
                               self.options.cutoff_len)
                self.dropped += 1
                continue
            examples.append(PackedExample(input_ids, labels, batch["images"][i] or [],
                                          batch["videos"][i] or [], batch["audios"][i] or []))
        packed = pack_examples(examples, self.options.cutoff_len, self.tokenizer.pad_token_id,
                               self.options.neat_packing)
        return packed or {name: [] for name in self.features}
