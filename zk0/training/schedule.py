"""One learning-rate schedule over the whole federated run, cut into rounds.

The run is `num-server-rounds x local-steps` global steps. Round r trains global steps
[(r - 1) * local_steps, r * local_steps), so a node needs only the round number (which
Flower's FedProx sends in every train message as `server-round`) and the run config (the
same on every node) to know its learning rates: all nodes agree without coordination.

`cosine` is SmolVLA's own lerobot schedule (`CosineDecayWithWarmupSchedulerConfig`, the
policy's `get_scheduler_preset`: linear warm-up, then cosine decay to a floor), stretched
over the run's global steps; the multiplier comes from lerobot's own lambda, not a copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

CONSTANT = "constant"
COSINE = "cosine"
SCHEDULES = (CONSTANT, COSINE)


def round_first_step(server_round: int, local_steps: int) -> int:
    """The global step round `server_round` (counted from 1, as Flower does) starts at."""
    if server_round < 1:
        raise ValueError(f"server round {server_round} is not a round: Flower counts them from 1")
    return (server_round - 1) * local_steps


@dataclass(frozen=True)
class LRSchedule:
    """Multipliers of the peak learning rate at each global step of a run."""

    kind: str  # one of SCHEDULES
    total_steps: int  # num-server-rounds x local-steps
    warmup_steps: int = 0
    min_ratio: float = 0.0  # the floor reached at the last step, as a fraction of the peak

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown learning-rate schedule {self.kind!r}: choose one of {', '.join(SCHEDULES)}")

    @cached_property
    def _lambda(self) -> Callable[[int], float]:
        import torch
        from lerobot.optim.schedulers import CosineDecayWithWarmupSchedulerConfig

        # lerobot's schedule is a LambdaLR over an optimizer; a one-parameter stand-in at lr 1
        # gives the same multipliers without touching the real optimizer.
        stand_in = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        config = CosineDecayWithWarmupSchedulerConfig(
            num_warmup_steps=self.warmup_steps,
            num_decay_steps=self.total_steps,
            peak_lr=1.0,
            decay_lr=self.min_ratio,
        )
        # num_training_steps == num_decay_steps: lerobot's rescaling for short runs stays off.
        return config.build(stand_in, self.total_steps).lr_lambdas[0]

    def factor(self, step: int) -> float:
        """The multiplier of the peak learning rate at global step `step` (from 0)."""
        if self.kind == CONSTANT:
            return 1.0
        return float(self._lambda(step))

    def round_factors(self, server_round: int, local_steps: int) -> list[float]:
        """The multipliers of round `server_round`'s local steps, in order."""
        first = round_first_step(server_round, local_steps)
        return [self.factor(first + i) for i in range(local_steps)]
