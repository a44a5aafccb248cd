"""Looking at tokenized data: length statistics (`tuneforge data check`) and rendered examples (the demo).

Statistics are computed on the Arrow columns directly (pyarrow.compute), so checking 100k rows takes
well under a second.
"""

from __future__ import annotations

from typing import Any, TextIO

from .schema import IGNORE_INDEX

GREEN, RESET = "\033[32m", "\033[0m"


def _ids_columns(column_names: list[str]) -> list[tuple[str, str | None]]:
    """(input_ids column, labels column or None) pairs present in a tokenized dataset."""
    pairs = []
    for prefix in ("", "chosen_", "rejected_"):
        if f"{prefix}input_ids" in column_names:
            labels = f"{prefix}labels" if f"{prefix}labels" in column_names else None
            pairs.append((f"{prefix}input_ids", labels))
    return pairs


def length_stats(dataset, stage: str, cutoff_len: int) -> dict[str, Any]:
    """count, min/mean/p50/p95/max of input lengths, share of rows at cutoff_len, trained-token share."""
    import numpy as np
    import pyarrow.compute as pc

    table = dataset.data.table if hasattr(dataset.data, "table") else dataset.data
    if dataset._indices is not None:  # noqa: SLF001  (a select/split view)
        table = dataset.flatten_indices().data.table
    lengths, tokens, trained = [], 0, 0
    for ids_name, labels_name in _ids_columns(dataset.column_names):
        column_lengths = pc.list_value_length(table.column(ids_name)).to_numpy(zero_copy_only=False)
        lengths.append(column_lengths)
        tokens += int(column_lengths.sum())
        if labels_name is None:  # pt: every real token is trained
            trained += int(column_lengths.sum())
        else:
            flat = pc.list_flatten(table.column(labels_name))
            trained += int(pc.sum(pc.not_equal(flat, IGNORE_INDEX)).as_py() or 0)
    all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    if all_lengths.size == 0:
        return {"count": 0}
    return {
        "count": int(len(dataset)),
        "min": int(all_lengths.min()),
        "mean": float(all_lengths.mean()),
        "p50": float(np.percentile(all_lengths, 50)),
        "p95": float(np.percentile(all_lengths, 95)),
        "max": int(all_lengths.max()),
        "at_cutoff": float((all_lengths >= cutoff_len).mean()),
        "trained_share": trained / tokens if tokens else 0.0,
        "tokens": tokens,
    }


def format_stats(name: str, stats: dict[str, Any]) -> str:
    if not stats.get("count"):
        return f"{name}: no rows"
    return (f"{name}: {stats['count']} rows, {stats['tokens']} tokens; input length min {stats['min']}, "
            f"mean {stats['mean']:.1f}, p50 {stats['p50']:.0f}, p95 {stats['p95']:.0f}, max {stats['max']}; "
            f"{stats['at_cutoff']:.1%} at cutoff_len (truncated); {stats['trained_share']:.1%} of tokens trained")


def print_data_check(reports, stats: dict[str, dict[str, Any]], out: TextIO) -> None:
    for report in reports:
        text = report.format() if hasattr(report, "format") else str(report)
        if text:
            print(text, file=out)
    for name, split_stats in stats.items():
        print(format_stats(name, split_stats), file=out)


def trained_spans(input_ids: list[int], labels: list[int] | None, tokenizer) -> list[tuple[bool, str]]:
    """A row decoded as (trained, text) spans: trained where label != -100 (every token when no labels)."""
    if labels is None:
        labels = input_ids
    spans: list[tuple[bool, list[int]]] = []
    for token, label in zip(input_ids, labels):
        trained = label != IGNORE_INDEX
        if spans and spans[-1][0] == trained:
            spans[-1][1].append(token)
        else:
            spans.append((trained, [token]))
    return [(trained, tokenizer.decode(ids, skip_special_tokens=False)) for trained, ids in spans]


def render_ids(input_ids: list[int], labels: list[int] | None, tokenizer, color: bool) -> str:
    """Decode a row, marking the spans whose labels are trained (label != -100)."""
    parts = []
    for trained, text in trained_spans(input_ids, labels, tokenizer):
        if trained:
            text = f"{GREEN}{text}{RESET}" if color else f"[[{text}]]"
        parts.append(text)
    return "".join(parts)


def render_rows(rows: dict[str, list], tokenizer, stage: str, n: int, color: bool) -> str:
    blocks = []
    pairs = _ids_columns(list(rows))
    for index in range(min(n, len(rows[pairs[0][0]]) if pairs else 0)):
        for ids_name, labels_name in pairs:
            labels = rows[labels_name][index] if labels_name else None
            title = f"--- example {index + 1}" + (f" ({ids_name[:-len('_input_ids')]})" if ids_name != "input_ids"
                                                   else "")
            if stage == "kto" and "kto_tags" in rows:
                title += " (desirable)" if rows["kto_tags"][index] else " (undesirable)"
            body = render_ids(rows[ids_name][index], labels, tokenizer, color)
            blocks.append(f"{title}, {len(rows[ids_name][index])} tokens ---\n{body}")
    legend = "trained tokens are green" if color else "trained tokens are inside [[...]]"
    return "\n\n".join(blocks + [f"({legend})"])
