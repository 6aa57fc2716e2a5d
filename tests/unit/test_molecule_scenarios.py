"""Every role's Molecule scenario runs the shared sequence (.config/molecule/config.yml):
converge, idempotence and verify, and cleanup exactly where a cleanup.yml exists (Molecule
only warns about a missing playbook, so nothing else would notice)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(REPO.glob("roles/*/molecule/default"))
BASE = yaml.safe_load((REPO / ".config" / "molecule" / "config.yml").read_text())["scenario"]["test_sequence"]


def _sequence(scenario: Path) -> list[str]:
    own = yaml.safe_load((scenario / "molecule.yml").read_text()).get("scenario", {})
    return own.get("test_sequence", BASE)  # Molecule replaces a list whole


def test_every_role_has_a_scenario() -> None:
    assert {s.parents[1].name for s in SCENARIOS} == {p.name for p in (REPO / "roles").iterdir() if p.is_dir()}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.parents[1].name)
def test_scenario_runs_the_shared_sequence_and_its_own_cleanup(scenario: Path) -> None:
    sequence = _sequence(scenario)
    has_cleanup = (scenario / "cleanup.yml").is_file()
    assert ("cleanup" in sequence) == has_cleanup, sequence
    # The shared steps, in the shared order; cleanup (where there is one) first and before the last destroy.
    expected = ["cleanup", *BASE[:-1], "cleanup", BASE[-1]] if has_cleanup else BASE
    assert sequence == expected
    assert {"converge", "idempotence", "verify"} <= set(sequence)
