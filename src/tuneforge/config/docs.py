"""The parameter reference (docs/parameters.md), generated from the declarations.

    python -m tuneforge.config.docs > docs/parameters.md
"""

from __future__ import annotations

from .schema import GROUPS, all_params


def render_markdown() -> str:
    lines = [
        "# Parameters",
        "",
        "Generated from `src/tuneforge/config/params/` by `python -m tuneforge.config.docs`; do not edit.",
        "",
        "Names and defaults are LLaMA-Factory 0.9.5's. Every field of transformers'",
        "`Seq2SeqTrainingArguments` (learning_rate, per_device_train_batch_size, output_dir, bf16, deepspeed, ...)",
        "is accepted as well and validated by transformers itself. Keys marked *later* are accepted and validated,",
        "but a non-default value stops `tuneforge train` with \"not implemented yet\" until their feature lands.",
        "",
    ]
    params = all_params()
    for group in GROUPS:
        members = [param for param in params.values() if param.group == group]
        if not members:
            continue
        lines += [f"## {group}", "", "| key | type | default | description |", "|---|---|---|---|"]
        for param in members:
            kind = param.kind if not param.choices else " \\| ".join(str(choice) for choice in param.choices)
            later = " *later*" if not param.implemented else ""
            help_text = param.help.replace("|", "\\|")
            lines.append(f"| `{param.name}`{later} | {kind} | `{param.default!r}` | {help_text} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_markdown(), end="")
