"""Ansible filters for zk0's value rules: the rules themselves live once, in zk0/validate.py.

This file is linked into roles/superlink/filter_plugins and roles/supernode/filter_plugins
(role-embedded plugins: found by Molecule and by any play that uses the role) and sits next
to the playbooks (found by the pre-flight play). It imports zk0.validate when the Python that
runs Ansible has zk0 (zk0bot's venv), else loads zk0/validate.py by path from the checkout
(zk0/validate.py) or from the installed package (zk0/_ops/... inside the zk0 package).

    {{ [['hostport', 'supernode_superlink_address', addr], ['port', 'superlink_port', 8000]] | zk0_problems }}
    {{ addr | zk0_error('hostport', 'supernode_superlink_address') }}   -> '' or the message
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _load():
    try:
        import zk0.validate as module

        return module
    except ImportError:
        pass
    here = Path(__file__).resolve()
    for parent in here.parents:
        for candidate in (parent / "zk0" / "validate.py", parent / "validate.py"):
            if candidate.is_file() and candidate.parent.name == "zk0":
                spec = importlib.util.spec_from_file_location("_zk0_validate", candidate)
                module = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = module
                spec.loader.exec_module(module)
                return module
    raise ImportError(f"zk0/validate.py not found above {here}")


_rules = _load()


def zk0_problems(checks):
    """[[kind, name, value], ...] -> one message per problem (empty list: all good)."""
    return _rules.problems([list(c) for c in checks])


def zk0_error(value, kind, name=""):
    """The problem with one value ('' when it is good)."""
    found = _rules.problems([[kind, name or kind, value]])
    return found[0] if found else ""


class FilterModule:
    """zk0 value checks (zk0/validate.py)."""

    def filters(self):
        return {"zk0_problems": zk0_problems, "zk0_error": zk0_error}
