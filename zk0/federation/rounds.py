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

from zk0.config import FederationSettings


@dataclass(frozen=True)
class RoundPlan:
    """The `*-every` settings (parsed by `zk0.config.parse_every`, one rule for all) as
    decisions: work is due after each round divisible by N, none when N is 0; server eval
    and checkpoints also after the last round, so a run always ends evaluated and saved."""

    num_rounds: int
    client_eval_every: int
    server_eval_every: int
    checkpoint_every: int

    @classmethod
    def from_settings(cls, settings: FederationSettings) -> RoundPlan:
        return cls(
            num_rounds=settings.num_server_rounds,
            client_eval_every=settings.client_eval_every,
            server_eval_every=settings.server_eval_every,
            checkpoint_every=settings.checkpoint_every,
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
