"""The dataset picker and preview: names from `dataset_dir/dataset_info.json`, examples rendered as HTML.

`dataset_dir` may be relative (to the directory the server runs in) or absolute; both list the same
datasets that `tuneforge train` would find with that value.
"""

from __future__ import annotations

import html
import json
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Config

PAIRWISE_STAGES = ("rm", "dpo")


def dataset_names(dataset_dir: str | None, stage: str | None = None) -> tuple[list[str], str]:
    """(names usable by `stage`, a problem to show or ""). Ranking (preference) datasets only for rm/dpo."""
    path = os.path.join(dataset_dir or "data", "dataset_info.json")
    try:
        with open(path, encoding="utf-8") as handle:
            info = json.load(handle)
    except FileNotFoundError:
        return [], f"no dataset_info.json in {os.path.abspath(dataset_dir or 'data')}"
    except (OSError, json.JSONDecodeError) as error:
        return [], f"{path}: {error}"
    if not isinstance(info, dict):
        return [], f"{path}: expected a JSON object of datasets"
    names: list[str] = []
    for name, entry in info.items():
        ranking = isinstance(entry, dict) and bool(entry.get("ranking"))
        if stage is None or ranking == (stage in PAIRWISE_STAGES):
            names.append(name)
    return names, ""


def preview_html(cfg: Config, n: int = 2) -> str:
    """The first `n` examples as the model will see them, trained tokens highlighted, each row's image
    thumbnails (and video first frames, audio names) beside its text (cfg: validated by the caller,
    actions.validated_config)."""
    from ..data import preview_rows, trained_spans
    from .media_preview import media_html

    rows, tokenizer, stage = preview_rows(cfg, n)
    blocks = []
    for prefix in ("", "chosen_", "rejected_"):
        ids_name, labels_name = f"{prefix}input_ids", f"{prefix}labels"
        if ids_name not in rows:
            continue
        for index, input_ids in enumerate(rows[ids_name][:n]):
            labels = rows[labels_name][index] if labels_name in rows else None
            body = "".join(f"<mark class='tf-trained'>{html.escape(text)}</mark>" if trained else html.escape(text)
                           for trained, text in trained_spans(input_ids, labels, tokenizer))
            title = f"example {index + 1}{' (' + prefix[:-1] + ')' if prefix else ''}, {len(input_ids)} tokens"
            media = media_html(*(rows[kind][index] if kind in rows else None
                                 for kind in ("images", "videos", "audios")))
            blocks.append(f"<div class='tf-example'><b>{html.escape(title)}</b>"
                          f"<div class='tf-row'>{media}<pre>{body}</pre></div></div>")
    legend = "<p><mark class='tf-trained'>highlighted</mark>: trained tokens (stage " + html.escape(stage) + ")</p>"
    return "<div id='tf-preview'>" + legend + "".join(blocks) + "</div>"
