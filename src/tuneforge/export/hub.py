"""`export_hub_model_id`: upload the whole export folder (weights, tokenizer, Modelfile, GGUF) to the Hub."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, UserError
from ..runtime import runtime

if TYPE_CHECKING:
    from ..config.groups import ExportArgs

logger = logging.getLogger(__name__)


def hub_problems(export: ExportArgs) -> list[str]:
    return _push_problems(export.export_hub_model_id)


def _push_problems(repo_id: str | None) -> list[str]:
    if repo_id and runtime().hub_offline:
        return [f"export_hub_model_id: pushing to {repo_id!r} needs the network, but HF_HUB_OFFLINE is set; "
                "unset HF_HUB_OFFLINE, or remove export_hub_model_id and upload export_dir later "
                "(`hf upload <repo> <export_dir>`)"]
    return []


def push_to_hub(export_dir: str, repo_id: str, token: str | None = None, api: Any = None) -> str:
    """Create the repository if needed and upload the folder; returns the commit URL."""
    problems = _push_problems(repo_id)
    if problems:
        raise ConfigError(problems)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    try:
        api.create_repo(repo_id, exist_ok=True)
        commit = api.upload_folder(folder_path=export_dir, repo_id=repo_id,
                                   commit_message="Upload model exported by tuneforge")
    except Exception as error:  # network, auth, permissions: the export itself is safe on disk
        raise UserError(f"export_hub_model_id: could not push {export_dir} to {repo_id!r} "
                        f"({type(error).__name__}: {error}); the export is complete on disk, upload it later "
                        "with `hf upload`") from None
    logger.info("Pushed %s to %s", export_dir, repo_id)
    return str(getattr(commit, "commit_url", commit))
