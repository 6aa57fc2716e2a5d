#!/usr/bin/env bash
# Print the path of a working Python 3.12 interpreter: on PATH, or under pyenv.
# pyenv shims count only if they actually run (a shim may exist for another version).
set -uo pipefail
candidates=(python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12)
if command -v pyenv >/dev/null 2>&1; then
    candidates+=("$(pyenv root)"/versions/3.12*/bin/python3.12)
fi
candidates+=("$HOME"/.pyenv/versions/3.12*/bin/python3.12)
for candidate in "${candidates[@]}"; do
    path=$(command -v "$candidate" 2>/dev/null) || continue
    if "$path" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
        "$path" -c 'import sys; print(sys.executable)'
        exit 0
    fi
done
echo "Python 3.12 not found: install it (apt-get install python3.12, or pyenv install 3.12) and re-run." >&2
exit 1
