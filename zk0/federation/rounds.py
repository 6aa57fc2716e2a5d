"""Which optional work each round does: evaluate messages, server eval, checkpoint.

On the deployment runtime every message to a node starts a fresh ClientApp process (Flower's
subprocess isolation), and for SmolVLA that process start (torch, lerobot, the policy)
dwarfs a round's training. So by default a round sends one message per node: the train
message asks the node to evaluate the weights it receives on its held-out episodes before
training, and the reply carries that loss. Separate evaluate messages, which score the
round's new weights one round earlier, are sent only every `client-eval-every` rounds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from zk0.config import ConfigError, FederationSettings

# Train message config key: evaluate the received weights before training, and report it.
EVAL_BEFORE_TRAIN = "eval-before-train"


def _every(run_config: dict[str, Any], key: str, default: int) -> int:
    value = run_config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"run config '{key}' = {value!r} should be a whole number >= 0 (0 = never)")
    return value


@dataclass(frozen=True)
class RoundPlan:
    num_rounds: int
    client_eval_every: int  # evaluate messages after rounds divisible by this; 0 = never
    server_eval_every: int  # 0 = after the last round only
    checkpoint_every: int  # 0 = after the last round only

    @classmethod
    def from_run_config(cls, run_config: dict[str, Any], settings: FederationSettings) -> RoundPlan:
        return cls(
            num_rounds=settings.num_server_rounds,
            client_eval_every=_every(run_config, "client-eval-every", 0),
            server_eval_every=max(settings.server_eval_every, 0),
            checkpoint_every=max(settings.checkpoint_every, 0),
        )

    @staticmethod
    def _due(server_round: int, every: int) -> bool:
        return every > 0 and server_round % every == 0

    def evaluate_messages(self, server_round: int) -> bool:
        return self._due(server_round, self.client_eval_every)

    def server_eval(self, server_round: int) -> bool:
        return self._due(server_round, self.server_eval_every) or server_round == self.num_rounds

    def checkpoint(self, server_round: int) -> bool:
        return self._due(server_round, self.checkpoint_every) or server_round == self.num_rounds


@dataclass
class StepClock:
    """Seconds per step of a round, so a slow round says which step was slow."""

    started: float = field(default_factory=time.monotonic)
    seconds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._mark = self.started

    def lap(self, step: str) -> None:
        now = time.monotonic()
        self.seconds[step], self._mark = now - self._mark, now

    def total(self) -> float:
        return time.monotonic() - self.started
