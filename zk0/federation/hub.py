"""Optional push of the final checkpoint to the Hugging Face Hub (private by default)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def push_checkpoint(checkpoint: Path, repo_id: str, private: bool = True, api=None) -> str | None:
    """Upload `checkpoint` to `repo_id` when HF_TOKEN is set; return the commit URL or None.

    The token is read from the environment (never from run config, which is logged and
    stored) and handed to the client object, not to any command line.
    """
    token = os.environ.get("HF_TOKEN")
    if not repo_id:
        return None
    if not token:
        log.warning("hub push skipped: HF_TOKEN is not set (repo %s)", repo_id)
        return None
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        repo_type="model",
        folder_path=str(checkpoint),
        commit_message=f"zk0 federated checkpoint {Path(checkpoint).name}",
    )
    log.info("pushed %s to the Hub as %s (private=%s)", Path(checkpoint).name, repo_id, private)
    return str(getattr(commit, "commit_url", commit))
