"""The server's answer to a stalled run: reduce-on-plateau for the learning rate and FedProx's mu.

After `plateau-patience` server evaluations without a new best loss, the nodes' learning rate
is scaled by `plateau-lr-factor` (never below `lr-min-ratio` of the run's `lr`) and the
proximal term's mu by `plateau-mu-factor` (a stronger pull toward the global weights when
nodes drift apart). The server sends the scale in every train message (`lr-scale`) and mu as
FedProx's own `proximal-mu`; each round's record carries both, and a resumed run reads them
back from the last record, so a resume continues where the run left off.

Off by default (`plateau-patience = 0`): the scale stays 1 and mu stays `proximal-mu`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# How much lower than the best a loss must be to count as a new best (relative): evaluation
# noise in the last digits is not progress.
MIN_IMPROVEMENT = 1e-4
RECORD_KEY = "plateau"  # the round record's entry (zk0.federation.metrics writes it)


@dataclass
class Plateau:
    patience: int  # evaluations without a new best before a change; 0 = off
    lr_factor: float  # in (0, 1]
    mu_factor: float  # >= 1
    mu: float  # FedProx's mu now
    min_lr_scale: float = 0.0  # the floor of lr_scale
    lr_scale: float = 1.0  # what the nodes multiply the run's learning rate by
    best: float = math.inf  # the lowest server-eval loss seen
    waited: int = 0  # evaluations since the best

    @classmethod
    def from_settings(cls, settings: Any) -> Plateau:
        return cls(
            patience=settings.plateau_patience,
            lr_factor=settings.plateau_lr_factor,
            mu_factor=settings.plateau_mu_factor,
            mu=settings.proximal_mu,
            min_lr_scale=settings.lr_min_ratio,
        )

    def observe(self, loss: float) -> bool:
        """Take one server-eval loss; True when the learning rate and mu changed just now."""
        if not self.patience:
            return False
        if math.isfinite(loss) and loss < self.best * (1 - MIN_IMPROVEMENT):
            self.best, self.waited = loss, 0
            return False
        self.waited += 1  # a loss that is not finite is no progress either
        if self.waited < self.patience:
            return False
        self.waited = 0
        self.lr_scale = max(self.min_lr_scale, self.lr_scale * self.lr_factor)
        self.mu *= self.mu_factor
        return True

    def state(self) -> dict[str, float | int | None]:
        """What a round record keeps (JSON: no infinity)."""
        best = self.best if math.isfinite(self.best) else None
        return {"lr-scale": self.lr_scale, "proximal-mu": self.mu, "best": best, "waited": self.waited}

    def restore(self, record: dict[str, Any]) -> None:
        """Continue from a round record's state (a resumed run); a record without one changes nothing."""
        state = record.get(RECORD_KEY)
        if not isinstance(state, dict):
            return
        self.lr_scale = float(state["lr-scale"])
        self.mu = float(state["proximal-mu"])
        self.best = math.inf if state.get("best") is None else float(state["best"])
        self.waited = int(state.get("waited", 0))
