"""Checks of the data-related names in a configuration, run before any dataset, tokenizer or model loads.

The config layer validates keys and value types but cannot know which templates exist or what a
`dataset_info.json` holds (it sits below the data layer). The entry points run these checks right after
loading the configuration, so a misspelled template or dataset name is reported at once, together with
the other configuration problems, instead of after minutes of loading.
"""

from __future__ import annotations

import os

from ..config.groups import DataArgs
from ..errors import ConfigError, DataError, UserError
from .registry import get_dataset_attrs
from .templates.registry import name_problems


def preflight_problems(data: DataArgs) -> list[str]:
    """Every problem found with the template, tool_format, dataset and eval_dataset names (may be empty)."""
    problems = name_problems(data.template, data.tool_format)
    if data.tokenized_path is not None and os.path.exists(data.tokenized_path):
        return problems  # the tokenized dataset is loaded as is; dataset names are not used
    for key, names in (("dataset", data.dataset), ("eval_dataset", data.eval_dataset)):
        if not names:
            continue
        try:
            get_dataset_attrs(names, data.dataset_dir)
        except (ConfigError, DataError) as err:
            problems.extend(f"{key}: {problem}" for problem in err.problems)
        except UserError as err:
            problems.append(f"{key}: {err}")
    return problems
