"""`zk0` failure paths as an operator meets them: one `error:` line naming the problem and the
fix, a non-zero exit, no traceback, and no secret from the environment anywhere in the output
(the client container runs `zk0 dataset check` at every start: its output lands in docker logs).

Every case runs the real `zk0` command in a subprocess, all of them at once (each fails before
lerobot or torch load, so the whole module takes a few seconds). Nothing reaches the network:
the Hub is either switched off (HF_HUB_OFFLINE=1) or a refused port (HF_ENDPOINT)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ZK0 = str(Path(sys.executable).with_name("zk0"))
SECRETS = {"HF_TOKEN": "hf_FAKE_zk0_test_token_1234567890", "WANDB_API_KEY": "wandb_FAKE_zk0_test_key_1234567890"}
TRUNCATED = '{"codebase_version": "v3.0", "fps": 30,'  # a meta/info.json cut off mid-write
REFUSED = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens on port 9


@dataclass(frozen=True)
class Case:
    args: list[str]
    expect: str  # a fragment of the one error line: the problem, and the fix where it is short
    env: dict[str, str]
    code: int | None = None  # the exit code, where the command documents one


def _info(episodes: int = 2, frames: int = 24, version: str = "v3.0") -> dict:
    # meta/info.json as lerobot v3.0 writes it (the fields the check reads).
    counts = {"total_episodes": episodes, "total_frames": frames, "total_tasks": 1}
    return {"codebase_version": version, "fps": 30, **counts, "chunks_size": 1000, "features": {}}


def _dataset(root: Path, info: dict | str, parts: bool = True) -> Path:
    """A v3.0 layout: meta/info.json, and (with parts) the tasks, episodes and data files."""
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(info if isinstance(info, str) else json.dumps(info))
    if parts:
        (root / "data" / "chunk-000").mkdir(parents=True)
        for part in (
            "meta/tasks.parquet",
            "meta/episodes/chunk-000/file-000.parquet",
            "data/chunk-000/file-000.parquet",
        ):
            (root / part).write_bytes(b"PAR1")
    return root


def _v21_dataset(root: Path) -> Path:
    """The files `zk0 dataset convert` looks for before lerobot loads (their content is not read)."""
    _dataset(root, _info(version="v2.1"), parts=False)
    (root / "data" / "chunk-000").mkdir(parents=True)
    (root / "data" / "chunk-000" / "episode_000000.parquet").write_bytes(b"PAR1")
    for name in ("episodes.jsonl", "tasks.jsonl", "episodes_stats.jsonl"):
        (root / "meta" / name).write_text("{}\n")
    return root


def _pem_public_key(key, path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


def _cases(tmp: Path) -> dict[str, Case]:
    a_file = tmp / "a-file"
    a_file.write_text("not a directory\n")
    pem = tmp / "pem-key"
    pem.mkdir()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (pem / "supernode.key").write_bytes(pkcs8)  # a PEM key where OpenSSH is expected
    (tmp / "no-meta").mkdir()
    (tmp / "user-data").mkdir()
    (tmp / "user-data" / "thesis.tex").write_text("irreplaceable\n")
    offline = {"HF_HUB_OFFLINE": "1"}
    return {
        "check: missing dir": Case(["dataset", "check", f"local:{tmp / 'absent'}"], "does not exist", {}),
        "check: no meta/": Case(["dataset", "check", f"local:{tmp / 'no-meta'}"], "info.json is missing", {}),
        "check: hf offline": Case(["dataset", "check", "hf:zk0-test/absent"], "HF_HUB_OFFLINE is set", offline),
        "check: hf refused": Case(
            ["dataset", "check", "hf:zk0-test/absent"], "cannot reach the Hugging Face Hub", REFUSED
        ),
        "check: corrupt info": Case(
            ["dataset", "check", f"local:{_dataset(tmp / 'corrupt', TRUNCATED, parts=False)}"],
            "is not valid JSON",
            REFUSED,
        ),
        "check: no meta/episodes": Case(
            ["dataset", "check", f"local:{_dataset(tmp / 'no-episodes-dir', _info(), parts=False)}"],
            "meta/episodes/",
            REFUSED,
        ),
        "check: zero episodes": Case(
            ["dataset", "check", f"local:{_dataset(tmp / 'zero-episodes', _info(episodes=0, frames=0))}"],
            "has no episodes",
            REFUSED,
        ),
        "check: zero frames": Case(
            ["dataset", "check", f"local:{_dataset(tmp / 'zero-frames', _info(frames=0))}"], "has no frames", REFUSED
        ),
        "check: v2.1": Case(
            ["dataset", "check", f"local:{_dataset(tmp / 'v21', _info(version='v2.1'))}"],
            f"`zk0 dataset convert local:{tmp / 'v21'}`",
            REFUSED,
        ),
        "synth: user dir": Case(
            ["dataset", "synth", "--out", str(tmp / "user-data"), "--overwrite"], "not a synthetic dataset zk0 made", {}
        ),
        "synth: bad resolution": Case(
            ["dataset", "synth", "--out", str(tmp / "odd"), "--video", "--resolution", "480x641"], "even sizes", {}, 2
        ),
        "convert: not a dataset": Case(
            ["dataset", "convert", f"local:{tmp / 'no-meta'}"], "is not a LeRobot dataset", REFUSED, 2
        ),
        "convert: already v3.0": Case(
            ["dataset", "convert", f"local:{_dataset(tmp / 'v30', _info())}"], "already LeRobot v3.0", REFUSED, 2
        ),
        "convert: output under a file": Case(
            ["dataset", "convert", f"local:{_v21_dataset(tmp / 'old')}", "--output", str(a_file / "new")],
            "is a file: choose a --output",
            REFUSED,
            2,
        ),
        "pki ca: --dir is a file": Case(["pki", "ca", "--dir", str(a_file)], "is a file, not a directory", {}),
        "node register: a PEM public key": Case(
            ["node", "register", str(_pem_public_key(key, tmp / "node.pem")), "--superlink", "zk0"],
            "is not an OpenSSH public key",
            {},
        ),
        "pki node-key: --dir under a file": Case(
            ["pki", "node-key", "--dir", str(a_file / "keys")], "a part of its path is a file", {}
        ),
        "pki superlink-cert: --dir is a file": Case(
            ["pki", "superlink-cert", "--dir", str(a_file), "--ca-dir", str(tmp / "ca"), "--san", "link.example.org"],
            "is a file, not a directory",
            {},
        ),
        "pki node-key: PEM key": Case(["pki", "node-key", "--dir", str(pem)], "is not an OpenSSH private key", {}),
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Case, subprocess.CompletedProcess]]:
    tmp = tmp_path_factory.mktemp("cli-errors")
    from zk0.deploy import pki

    pki.create_ca(tmp / "ca")
    cases = _cases(tmp)
    assert set(cases) == set(NAMES), "NAMES (the test ids) and _cases must list the same cases"
    base = {**os.environ, **SECRETS, "HF_HOME": str(tmp / "hf-home"), "NO_COLOR": "1", "COLUMNS": "200"}

    def run(case: Case) -> subprocess.CompletedProcess:
        env = {**base, **case.env}
        return subprocess.run([ZK0, *case.args], env=env, capture_output=True, text=True, timeout=120, check=False)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(cases, pool.map(run, cases.values()), strict=True))
    assert (tmp / "user-data" / "thesis.tex").read_text() == "irreplaceable\n"
    return {name: (cases[name], results[name]) for name in cases}


NAMES = [
    *("check: missing dir", "check: no meta/", "check: hf offline", "check: hf refused", "check: corrupt info"),
    *("check: no meta/episodes", "check: zero episodes", "check: zero frames", "check: v2.1", "synth: user dir"),
    *("synth: bad resolution", "convert: not a dataset", "convert: already v3.0", "convert: output under a file"),
    *("pki ca: --dir is a file", "pki node-key: --dir under a file", "pki superlink-cert: --dir is a file"),
    "pki node-key: PEM key",
    "node register: a PEM public key",
]


@pytest.mark.parametrize("name", NAMES)
def test_failure_is_one_line_without_secrets(runs, name: str) -> None:
    case, proc = runs[name]
    output = proc.stdout + proc.stderr
    for secret in SECRETS.values():
        assert secret not in output, f"{name}: a secret leaked:\n{output}"
    assert proc.returncode != 0, output
    assert case.code is None or proc.returncode == case.code, output
    assert "Traceback" not in output and "locals" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output
    assert case.expect in errors[0], output


ZK0BOT = str(Path(sys.executable).with_name("zk0bot"))


def test_zk0bot_failures_show_no_secret(tmp_path: Path) -> None:
    """zk0bot's failure paths, with the fake tokens in the environment and one passed where it
    must not go (a --var): no traceback, a non-zero exit, and no secret anywhere in the output."""
    from zk0.deploy import launch, pki

    ca = pki.create_ca(tmp_path / "ca").cert
    env = {
        **os.environ,
        **SECRETS,
        "ZK0BOT_HOME": str(tmp_path / "home"),
        "FLWR_HOME": str(tmp_path / "flwr"),
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
    client = ["client", "start", "--dataset", "local:/srv/ds", "--ca", str(ca), "--check"]
    cases = {
        "bad address": [*client, "--superlink", "host:99999"],
        "secret as --var": [
            *client,
            "--superlink",
            "link.example.org:8000",
            "--var",
            f"supernode_hf_token={SECRETS['HF_TOKEN']}",
        ],
        "closed port": [
            "doctor",
            "--check",
            "superlink",
            "--superlink",
            f"127.0.0.1:{launch.free_port()}",
            "--ca",
            str(ca),
        ],
        "missing key": ["server", "enroll", str(tmp_path / "absent.pub"), "--name", "x", "--no-register"],
    }

    def run(args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([ZK0BOT, *args], env=env, capture_output=True, text=True, timeout=120, check=False)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(cases, pool.map(run, cases.values()), strict=True))
    for name, proc in results.items():
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0, (name, output)
        assert "Traceback" not in output, (name, output)
        for secret in SECRETS.values():
            assert secret not in output, f"{name}: a secret leaked:\n{output}"
