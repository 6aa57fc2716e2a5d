"""Run the project's real playbooks against the lab hosts and read the play recap."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from lab.config import ROOT, LabConfig
from lab.docker import LabError

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\\e\[[0-9;]*[A-Za-z]")
RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)"
)


def ansible_playbook() -> str:
    for candidate in (ROOT / ".venv-ops" / "bin" / "ansible-playbook", Path(sys.prefix) / "bin" / "ansible-playbook"):
        if candidate.exists():
            return str(candidate)
    raise LabError("ansible-playbook not found: run `make setup-ops` (make demo does).")


def playbook(
    cfg: LabConfig,
    name: str,
    limit: str | None = None,
    extra_inventory: list[Path] | None = None,
    echo: bool = True,
    log_name: str | None = None,
    timeout: float = 3600,
) -> dict[str, dict[str, int]]:
    """`ansible-playbook playbooks/<name> -i inventory/lab`; returns the recap per host.

    The full output goes to .lab/logs/<log_name>.log (and to the terminal when `echo`).
    Raises LabError naming the log when the play fails.
    """
    argv = [ansible_playbook(), str(ROOT / "playbooks" / name), "-i", str(cfg.inventory)]
    for extra in extra_inventory or []:
        argv += ["-i", str(extra)]
    if limit:
        argv += ["--limit", limit]
    bin_dir = str(Path(argv[0]).parent)
    env = {
        **os.environ,
        "ZK0_LAB_DIR": str(cfg.state_dir.resolve()),
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_FORCE_COLOR": "0",
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
    }
    logs = cfg.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{log_name or Path(name).stem}.log"
    lines: list[str] = []
    with (
        open(log_path, "w", encoding="utf-8") as log,
        subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            lines.append(line)
            if echo:
                sys.stdout.write(line)
                sys.stdout.flush()
        code = proc.wait(timeout=timeout)
    recap = parse_recap(lines)
    if code != 0:
        raise LabError(
            f"ansible-playbook {name} failed (exit {code}; {summary(recap)}): "
            f"{failure(lines)} (the whole log: {log_path})"
        )
    return recap


def failure(lines: list[str]) -> str:
    """The failed task and its message: from the last `fatal:` line to the end of its block."""
    starts = [i for i, line in enumerate(lines) if line.startswith(("fatal:", "failed:"))]
    if not starts:
        return "".join(lines[-15:]).strip()[-1500:]
    task = next((lines[i].strip() for i in range(starts[-1], -1, -1) if lines[i].startswith("TASK [")), "")
    block = []
    for line in lines[starts[-1] :]:
        if block and (line.startswith(("TASK [", "PLAY ", "RUNNING HANDLER")) or not line.strip()):
            break
        block.append(ANSI.sub("", line.rstrip()))
    return f"{task} " + " ".join(part.strip() for part in block)[:3000]


def parse_recap(lines: list[str]) -> dict[str, dict[str, int]]:
    recap: dict[str, dict[str, int]] = {}
    in_recap = False
    for line in lines:
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        match = RECAP.match(line.strip()) if in_recap else None
        if match:
            recap[match["host"]] = {k: int(v) for k, v in match.groupdict().items() if k != "host"}
    return recap


def summary(recap: dict[str, dict[str, int]]) -> str:
    return (
        ", ".join(
            f"{host} ok={r['ok']} changed={r['changed']} failed={r['failed']}" for host, r in sorted(recap.items())
        )
        or "no recap"
    )
