"""Errors caused by the user's input. The CLI prints them as `error: <message>` (exit 2), never a traceback.

Anything else that escapes is a bug in tuneforge and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class UserError(Exception):
    """A mistake in the user's config or data. The message says what is wrong, where, and how to fix it."""


class ConfigError(UserError):
    """One or more problems in a configuration.

    `ConfigError("text")` behaves like a plain exception with that message. The config loader passes every
    problem it found at once (a list) plus the source (file name), so the user fixes them in one go.
    """

    def __init__(self, problems: str | Iterable[str], source: str | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        super().__init__(self._format())

    def _format(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        if len(self.problems) == 1:
            return prefix + self.problems[0]
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        return f"{prefix}{len(self.problems)} problems in the configuration:\n{lines}"


class DataError(UserError):
    """A problem in a dataset or in dataset_info.json (names the dataset, file, row and field).

    `problems`: one entry per problem, for callers that merge problem lists (the up-front name checks)."""

    def __init__(self, message: str, problems: Iterable[str] | None = None):
        super().__init__(message)
        self.problems = list(problems) if problems is not None else [message]
