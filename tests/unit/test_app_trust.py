"""The node's app allowlist: parsing, the hash of an app bundle, `zk0 app hash`, the refusal."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zk0.cli import app as zk0_cli
from zk0.supernode import launcher, trust

NUMPY_APP = Path(__file__).resolve().parents[2] / "bench" / "numpy_app"
A, B = "a" * 64, "0123456789abcdef" * 4


def test_allowlist_file_with_comments_and_blank_lines() -> None:
    text = f"# the image's own release\n{A}\n\n  {B}  # the operator's own\n"
    assert trust.parse_hashes(text, "f") == {A, B}


@pytest.mark.parametrize("bad", [A.upper(), A[:-1], A + "0", "sha256:" + A, "not-a-hash"])
def test_a_bad_line_is_named(bad: str) -> None:
    with pytest.raises(trust.TrustError, match=r"trusted\.txt:2: .* is not a SHA-256"):
        trust.parse_hashes(f"{A}\n{bad}\n", "trusted.txt")


def test_files_and_variable_add_up(tmp_path: Path) -> None:
    listed, extra = tmp_path / "trusted-apps.txt", tmp_path / "extra.txt"
    listed.write_text(f"{A}\n")
    extra.write_text(f"# operator\n{B}\n")
    assert trust.load_allowlist({trust.FILE_ENV: str(listed), trust.EXTRA_FILE_ENV: str(extra)}) == {A, B}
    env = {trust.FILE_ENV: str(listed), trust.HASHES_ENV: f" {B}, {A} "}
    assert trust.load_allowlist(env) == {A, B}


def test_nothing_listed_trusts_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n")
    assert trust.load_allowlist({trust.FILE_ENV: str(empty)}) == frozenset()
    assert trust.load_allowlist({trust.FILE_ENV: str(empty), trust.HASHES_ENV: " , "}) == frozenset()


@pytest.mark.parametrize("var", [trust.FILE_ENV, trust.EXTRA_FILE_ENV])
def test_a_named_file_that_is_missing_is_an_error(var: str, tmp_path: Path) -> None:
    with pytest.raises(trust.TrustError, match=f"{var}=.*nope.txt does not exist"):
        trust.load_allowlist({var: str(tmp_path / "nope.txt")})


def test_a_bad_hash_in_the_variable_is_named() -> None:
    with pytest.raises(trust.TrustError, match=f"{trust.HASHES_ENV}:2"):
        trust.load_allowlist({trust.FILE_ENV: "", trust.HASHES_ENV: f"{A},xyz"})


def test_empty_allowlist_says_so_at_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(trust.FILE_ENV, str(tmp_path / "empty.txt"))
    (tmp_path / "empty.txt").write_text("")
    monkeypatch.delenv(trust.HASHES_ENV, raising=False)
    logger = logging.getLogger("zk0.supernode")
    monkeypatch.setattr(logger, "propagate", True)
    with caplog.at_level(logging.INFO, logger="zk0.supernode"):
        assert launcher.load_trusted_apps() == frozenset()
    assert "no app is trusted" in caplog.text and trust.HASHES_ENV in caplog.text


def test_a_bad_allowlist_stops_the_node_before_it_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "t.txt").write_text("oops\n")
    monkeypatch.setenv(trust.FILE_ENV, str(tmp_path / "t.txt"))
    assert launcher.main(["--superlink", "link:8000"]) == 2
    assert "t.txt:1: 'oops' is not a SHA-256" in capsys.readouterr().err


def test_fab_hash_is_the_sha256_of_its_bytes(tmp_path: Path) -> None:
    fab = trust.build_fab(NUMPY_APP)
    (tmp_path / "app.fab").write_bytes(fab)
    assert trust.app_hash(tmp_path / "app.fab") == hashlib.sha256(fab).hexdigest()


def _hash_cli(path: Path) -> str:
    result = CliRunner().invoke(zk0_cli, ["app", "hash", str(path)])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_zk0_app_hash_of_a_dir_and_of_its_fab(tmp_path: Path) -> None:
    app = shutil.copytree(NUMPY_APP, tmp_path / "numpy_app", ignore=shutil.ignore_patterns("__pycache__"))
    digest = _hash_cli(app)
    assert len(digest) == 64 and digest == _hash_cli(app)  # `flwr run` builds it deterministically
    fab = tmp_path / "built.fab"
    fab.write_bytes(trust.build_fab(app))
    assert _hash_cli(fab) == digest
    (app / "notes.txt").write_text("not part of a FAB\n")
    assert _hash_cli(app) == digest
    module = next(p for p in app.rglob("*.py") if p.name != "__init__.py")
    module.write_text(module.read_text() + "\n# one more line\n")
    assert _hash_cli(app) != digest


def test_zk0_app_hash_of_a_non_app_fails(tmp_path: Path) -> None:
    result = CliRunner().invoke(zk0_cli, ["app", "hash", str(tmp_path)])
    assert result.exit_code == 1 and "pyproject.toml" in result.output


def test_untrusted_bundle_is_refused_before_install(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = []
    guarded = trust.guarded_install(lambda fab, **kw: installed.append(fab) or Path("/x"), frozenset({A}))
    monkeypatch.setattr(logging.getLogger("zk0.supernode"), "propagate", True)
    fab = b"PK not really a zip"
    digest = hashlib.sha256(fab).hexdigest()
    with caplog.at_level(logging.INFO, logger="zk0.supernode"), pytest.raises(trust.AppNotTrusted) as err:
        guarded(fab, skip_prompt=True)
    assert installed == []
    assert str(err.value) == "this app is not trusted by this node"  # all the server sees
    assert digest in caplog.text and trust.HASHES_ENV in caplog.text and trust.FILE_ENV in caplog.text
    ok = trust.guarded_install(lambda fab, **kw: installed.append(fab) or Path("/x"), frozenset({digest}))
    assert ok(fab, skip_prompt=True) == Path("/x") and installed == [fab]
