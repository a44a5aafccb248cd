"""What a caller of the web UI may reach on this machine: the folders its paths may point into and the keys
it may set.

Every button's handler is also an HTTP endpoint (Gradio's API), so a caller need not use the page: whatever a
handler reads or writes is checked here, on the configuration the handler built (form fields and "extra
arguments" alike), before anything is read, written or started.

- Paths: the keys in WRITTEN_PATHS are always checked (a run writes there); those in READ_PATHS only when they
  name a local path (an absolute path, one with `..` or `~`, or one that exists), since a hub id such as
  `Qwen/Qwen2.5-0.5B` is not a path on this machine. A path must resolve (symlinks followed) inside one of
  the allowed roots: by default the working directory, the output root, tuneforge's cache and the Hugging
  Face cache; `tuneforge webui --allowed-root DIR` adds more.
- Keys in RESTRICTED_KEYS are refused unless the server was started with `--allow-key KEY`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

# Keys whose value a run writes into.
WRITTEN_PATHS = ("output_dir", "logging_dir", "export_dir", "save_dir", "tokenized_path", "cache_dir",
                 "profiler_output_dir", "swanlab_logdir")
# Keys a run reads from when they name a local path.
READ_PATHS = ("model_name_or_path", "adapter_name_or_path", "ref_model", "ref_model_adapters", "reward_model",
              "reward_model_adapters", "dataset_dir", "media_dir", "task_dir", "deepspeed", "resume_from_checkpoint",
              "kt_weight_path", "kt_expert_checkpoint_path", "gguf_file")
# Keys a caller may not set unless the server allows them: why each is dangerous.
RESTRICTED_KEYS = {
    "trust_remote_code": "it runs Python code shipped with the model on this server",
}


@dataclass(frozen=True)
class Access:
    roots: tuple[str, ...]  # resolved absolute folders
    allowed_keys: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def default(cls, output_root: str, extra_roots: Iterable[str] = (), allowed_keys: Iterable[str] = ()) -> Access:
        """The working directory, the output root, the caches and `extra_roots`."""
        unknown = sorted(set(allowed_keys) - set(RESTRICTED_KEYS))
        if unknown:
            raise ConfigError(f"--allow-key {', '.join(unknown)}: only {', '.join(RESTRICTED_KEYS)} can be "
                              "allowed (every other key is always allowed)")
        roots = [os.getcwd(), output_root, *_cache_roots(), *extra_roots]
        return cls(tuple(dict.fromkeys(os.path.realpath(os.path.expanduser(root)) for root in roots)),
                   frozenset(allowed_keys))

    def check_path(self, field: str, path: str) -> None:
        """ConfigError naming `field` when `path` resolves outside every allowed root."""
        problem = self._path_problem(field, path)
        if problem:
            raise ConfigError(problem)

    def check_config(self, config: dict[str, Any]) -> None:
        """Every path key inside the roots and no restricted key set (all problems in one ConfigError)."""
        problems = []
        for key in (*WRITTEN_PATHS, *READ_PATHS):
            for path in _paths_of(config.get(key)):
                if key in WRITTEN_PATHS or _is_local(path):
                    problems.append(self._path_problem(key, path))
        for key, why in RESTRICTED_KEYS.items():
            if config.get(key) not in (None, False, "", "false", "False") and key not in self.allowed_keys:
                problems.append(f"{key}: refused by this web UI because {why}; start it with "
                                f"`tuneforge webui --allow-key {key}` to allow it")
        problems = [problem for problem in problems if problem]
        if problems:
            raise ConfigError(problems)

    def _path_problem(self, field: str, path: str) -> str:
        resolved = os.path.realpath(os.path.expanduser(path))
        if any(_inside(resolved, root) for root in self.roots):
            return ""
        return (f"{field}: {path} is outside the folders this web UI may use ({', '.join(self.roots)}); "
                "choose a path inside them, or start it with `tuneforge webui --allowed-root DIR`")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _paths_of(value: Any) -> list[str]:
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, (list, tuple)):
        return [item for item in value if isinstance(item, str) and item]
    return []  # resume_from_checkpoint: true, deepspeed given as a dict, unset keys


def _is_local(path: str) -> bool:
    """Whether a read path names this machine's files rather than a hub repository."""
    parts = path.replace("\\", "/").split("/")
    return os.path.isabs(path) or path.startswith("~") or ".." in parts or os.path.exists(path)


def _cache_roots() -> list[str]:
    from huggingface_hub import constants

    from ..runtime import runtime

    return [runtime().cache_root, constants.HF_HOME]
