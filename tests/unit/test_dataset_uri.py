from pathlib import Path

import pytest

from zk0.data.uri import DatasetURIError, parse_dataset_uri


def test_local_absolute_path():
    uri = parse_dataset_uri("local:/data/so100")
    assert uri.is_local and uri.path == Path("/data/so100") and uri.repo_id is None


@pytest.mark.parametrize(
    ("text", "repo", "rev"),
    [("hf:lerobot/svla_so100_pickplace", "lerobot/svla_so100_pickplace", None), ("hf:me/ds@v1.0", "me/ds", "v1.0")],
)
def test_hub_repo_with_optional_revision(text, repo, rev):
    uri = parse_dataset_uri(text)
    assert (uri.scheme, uri.repo_id, uri.revision) == ("hf", repo, rev)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("/data/so100", "no scheme"),
        ("s3://bucket/ds", "unknown scheme"),
        ("local:", "no path"),
        ("local:data/so100", "relative path"),
        ("hf:just-a-name", "owner/name"),
        ("hf:owner/name/extra", "owner/name"),
        ("hf:owner/name@", "revision"),
    ],
)
def test_malformed_uris_name_the_problem_and_the_fix(text, fragment):
    with pytest.raises(DatasetURIError) as err:
        parse_dataset_uri(text)
    message = str(err.value)
    assert fragment in message
    assert "local:" in message or "'@'" in message  # every message shows the right form
