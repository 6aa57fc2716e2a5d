import pytest

from zk0.config import ConfigError, FederationSettings
from zk0.federation.hub import push_checkpoint


class RecordingHub:
    """Stands in for huggingface_hub.HfApi: the Hub is unreachable here."""

    def __init__(self):
        self.calls = []

    def create_repo(self, **kwargs):
        self.calls.append(("create_repo", kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        return "https://hub.example/commit/1"


def test_push_creates_a_private_repo_and_uploads_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token")
    hub = RecordingHub()
    assert push_checkpoint(tmp_path, "team/zk0-smolvla", api=hub) == "https://hub.example/commit/1"
    (create, repo), (upload, files) = hub.calls
    assert create == "create_repo" and repo["private"] is True and repo["repo_id"] == "team/zk0-smolvla"
    assert upload == "upload_folder" and files["folder_path"] == str(tmp_path)
    assert "hf_secret_token" not in repr(hub.calls)


def test_push_needs_both_token_and_repo(tmp_path, monkeypatch):
    hub = RecordingHub()
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert push_checkpoint(tmp_path, "team/zk0-smolvla", api=hub) is None
    monkeypatch.setenv("HF_TOKEN", "x")
    assert push_checkpoint(tmp_path, "", api=hub) is None
    assert hub.calls == []


BASE = {"num-server-rounds": 2, "local-steps": 3, "lr": 1e-3, "model": "tiny"}


def test_settings_parse_and_override():
    settings = FederationSettings.from_run_config({**BASE, "proximal-mu": 0.5, "server-eval-datasets": "a, b"})
    assert settings.proximal_mu == 0.5 and settings.eval_datasets == ("a", "b")
    assert settings.train_config(3, 0.5).local_steps == 3


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({**BASE, "lr ": 1e-3}, r"unknown key\(s\) lr "),
        ({**BASE, "local-steps": "ten"}, "'local-steps' = 'ten' should be int"),
        ({**BASE, "num-server-rounds": 0}, "'num-server-rounds' must be at least 1"),
    ],
)
def test_bad_run_config_names_the_key(config, message):
    with pytest.raises(ConfigError, match=message):
        FederationSettings.from_run_config(config)
