#!/usr/bin/env bash
# Install the `zk0bot` command for this user from a zk0 checkout (or a wheel / sdist / URL).
#
#   scripts/install-zk0bot.sh            # full: zk0 with its dependencies + Ansible (pipx when present)
#   scripts/install-zk0bot.sh --light    # zk0bot's runtime only: no torch/lerobot (about 0.75 GB instead of 6)
#   scripts/install-zk0bot.sh --light dist/zk0-<version>-py3-none-any.whl
#
# The full install with pipx on PATH runs `pipx install "<source>[operator]"` (upgrades with
# --force). Otherwise (no pipx: Debian forbids `pip install --user` under PEP 668), and always
# with --light, it makes a private venv in $ZK0BOT_VENV (default ~/.local/share/zk0bot/venv)
# and links $ZK0BOT_BIN_DIR/zk0bot (default ~/.local/bin), which is what pipx does. Needs
# Python 3.12 and PyPI access.
# --light installs zk0 without its declared dependencies and then exactly what zk0bot
# imports: typer, flwr (enrollment, `flwr run`), ansible and ansible-runner (which runs it),
# prometheus-client (`server status` reads the monitor's metrics). pipx cannot do that: it
# reads the metadata of every declared dependency after installing, and stops at the first
# one `--no-deps` left out ("cannot find package ... metadata", pipx 1.1 to 1.18);
# pins as in pyproject.toml and requirements/ops.in (tests/integration/bot/test_install.py
# checks they agree).
set -euo pipefail

LIGHT_DEPS=("typer==0.20.1" "flwr==1.42.0" "ansible==14.5.0" "ansible-runner==2.4.3" "prometheus-client==0.26.0")
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
light=0
if [[ "${1:-}" == "--light" ]]; then light=1; shift; fi
source="${1:-$(dirname "$here")}"
if [[ -d "$source" && ! -f "$source/pyproject.toml" ]]; then
    echo "error: $source is not a zk0 checkout (no pyproject.toml). Fix: pass the checkout, a wheel or a URL." >&2
    exit 2
fi
python="${ZK0BOT_PYTHON:-$("$here/find-python.sh")}"

if (( ! light )) && command -v pipx >/dev/null 2>&1 && [[ -z "${ZK0BOT_VENV:-}" ]]; then
    pipx install --force --python "$python" "$source[operator]"
    bin="$(pipx environment --value PIPX_BIN_DIR)"
else
    venv="${ZK0BOT_VENV:-$HOME/.local/share/zk0bot/venv}"
    bin="${ZK0BOT_BIN_DIR:-$HOME/.local/bin}"
    "$python" -m venv --clear "$venv"
    pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
    if (( light )); then
        "${pip[@]}" "${LIGHT_DEPS[@]}"
        "${pip[@]}" --no-deps --no-warn-conflicts "$source"  # zk0's own torch/lerobot pins are not wanted
    else
        "${pip[@]}" "$source[operator]"
    fi
    mkdir -p "$bin"
    ln -sf "$venv/bin/zk0bot" "$bin/zk0bot"
fi

"$bin/zk0bot" --version
"$bin/zk0bot" paths
case ":$PATH:" in *":$bin:"*) ;; *) echo "note: add $bin to PATH (e.g. in ~/.profile) to type zk0bot directly." ;; esac
echo "next: zk0bot doctor   (docs/NODE-OPERATORS.md)"
