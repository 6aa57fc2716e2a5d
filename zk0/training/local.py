"""Local SmolVLA steps as lerobot trains them, plus FedProx's proximal term.

The loop mirrors lerobot's `update_policy`: the policy's optimizer preset (AdamW, its
betas, eps and weight decay), gradient clipping at the preset norm, one optimizer step per
batch. The learning rate follows the run's schedule (`zk0.training.schedule`): one schedule
over all rounds' steps, of which a round trains its own slice (a fresh warm-up every round
would keep it near zero for the few local steps a round has).

The optimizer is built afresh in every round, so AdamW's moments start empty: the weights
it would continue from are gone (replaced by the aggregate, a point no node's moments
describe), a node may sit out rounds (sampling, dropouts) so kept moments would be stale by
different amounts on different nodes, and keeping them would cost twice the trainable
weights in node state (800 MB at full size). The schedule's learning rate carries the
run's progress instead.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Subset

from zk0.training.schedule import LRSchedule


@dataclass(frozen=True)
class TrainConfig:
    # No defaults for the run's knobs: they come from FederationSettings (pyproject's).
    local_steps: int
    batch_size: int
    lr: float | None = None  # the peak; None keeps the policy's preset learning rate
    schedule: LRSchedule | None = None  # None: `lr` at every step
    first_step: int = 0  # the run's global step this call's first step is (see `round_first_step`)
    proximal_mu: float = 0.0
    seed: int = 0
    num_workers: int = 0


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)  # each step's learning rate, read from the optimizer
    num_examples: int = 0
    seconds: float = 0.0

    @property
    def samples_per_second(self) -> float:
        return self.num_examples / self.seconds if self.seconds else 0.0


def proximal_term(params: list[torch.Tensor], global_params: list[torch.Tensor]) -> torch.Tensor:
    """Sum of squared distances to the global weights: FedProx adds mu/2 times this."""
    total = torch.zeros((), device=params[0].device)
    for local, anchor in zip(params, global_params, strict=True):
        total = total + (local - anchor).pow(2).sum()
    return total


def make_optimizer(policy, lr: float | None):
    preset = policy.config.get_optimizer_preset()
    if lr is not None:
        preset.lr = lr
    return preset.build(policy.get_optim_params()), preset.grad_clip_norm


# Batches each worker keeps ready (torch's own default, chosen here on purpose): throughput
# comes from more workers; a deeper queue only holds more decoded frames in shared memory
# (batch 16, two 480x640 cameras as float32: about 120 MB a batch, times workers x this).
PREFETCH_BATCHES = 2


def on_cuda(policy) -> bool:
    """Whether `policy` trains on a CUDA device (the loader then pins its batches)."""
    return next(policy.parameters()).device.type == "cuda"


def _loader(
    dataset, batch_size: int, seed: int, shuffle: bool, num_workers: int, pin_memory: bool = False
) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    workers = num_workers > 0
    return DataLoader(
        dataset,
        batch_size=min(batch_size, len(dataset)),
        shuffle=shuffle,
        generator=generator,
        drop_last=shuffle,
        num_workers=num_workers,
        # Page-locked batches copy to the GPU asynchronously (lerobot's device step uses
        # non_blocking for CUDA); on a CPU node pinning is only a copy.
        pin_memory=pin_memory,
        # Workers live for the round (its one loader is re-iterated for every epoch in it),
        # not respawned per epoch, and end with it.
        persistent_workers=workers,
        prefetch_factor=PREFETCH_BATCHES if workers else None,
    )


def train_steps(policy, preprocessor, dataset, cfg: TrainConfig) -> TrainResult:
    """Run `cfg.local_steps` optimizer steps; FedProx anchors on the weights at entry."""
    trainable = [p for p in policy.parameters() if p.requires_grad]
    anchor = [p.detach().clone() for p in trainable] if cfg.proximal_mu > 0 else None
    optimizer, clip_norm = make_optimizer(policy, cfg.lr)  # fresh each round: see the module's docstring
    schedule = cfg.schedule
    scheduler = LambdaLR(optimizer, lambda i: schedule.factor(cfg.first_step + i)) if schedule else None
    loader = _loader(
        dataset, cfg.batch_size, cfg.seed, shuffle=True, num_workers=cfg.num_workers, pin_memory=on_cuda(policy)
    )
    batches = itertools.chain.from_iterable(itertools.repeat(loader))

    torch.manual_seed(cfg.seed)
    policy.train()
    result = TrainResult()
    start = time.perf_counter()
    for raw in itertools.islice(batches, cfg.local_steps):
        batch = preprocessor(raw)
        loss, _ = policy.forward(batch)
        result.losses.append(loss.item())
        if anchor is not None:
            loss = loss + 0.5 * cfg.proximal_mu * proximal_term(trainable, anchor)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), clip_norm)
        result.lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        optimizer.zero_grad()
        if scheduler is not None:
            scheduler.step()
        result.num_examples += len(batch["action"])
    result.seconds = time.perf_counter() - start
    return result


@torch.no_grad()
def evaluate_loss(
    policy, preprocessor, dataset, batch_size: int, seed: int, max_batches: int | None = None, num_workers: int = 0
):
    """Mean flow-matching loss over `dataset`; seeded, so the same weights give the same number."""
    policy.eval()
    torch.manual_seed(seed)  # SmolVLA samples noise and time in forward()
    loader = _loader(dataset, batch_size, seed, shuffle=False, num_workers=num_workers, pin_memory=on_cuda(policy))
    total, count = 0.0, 0
    for raw in itertools.islice(loader, max_batches):
        batch = preprocessor(raw)
        loss, _ = policy.forward(batch)
        n = len(batch["action"])
        total += loss.item() * n
        count += n
    return (total / count if count else float("nan")), count


@dataclass
class ActionTrace:
    """One episode's recorded actions next to the policy's, frame by frame, in dataset units."""

    episode: int
    recorded: np.ndarray  # (frames, action dims)
    predicted: np.ndarray  # (frames, action dims)
    names: list[str]  # one per action dim


def _action_names(dataset, dims: int) -> list[str]:
    names = dataset.meta.features.get("action", {}).get("names")
    if isinstance(names, dict):  # some datasets nest them: {"motors": [...]}
        names = next(iter(names.values()), None)
    if isinstance(names, list) and len(names) == dims:
        return [str(n) for n in names]
    return [f"action {i}" for i in range(dims)]


@torch.no_grad()
def action_trace(policy, preprocessor, postprocessor, dataset, max_frames: int = 64, seed: int = 0) -> ActionTrace:
    """The first episode of `dataset` (at most `max_frames` frames): each frame's recorded
    action and the action the policy picks there as it would run on a robot (`select_action`:
    a chunk predicted from one frame's observation is played out, then the next is predicted).
    Seeded, like `evaluate_loss`: SmolVLA samples noise when it predicts."""
    if len(dataset) == 0:
        raise ValueError("the dataset has no frames")
    policy.eval()
    policy.reset()  # an empty action queue: the first frame predicts a fresh chunk
    torch.manual_seed(seed)
    frames = Subset(dataset, range(min(max_frames, len(dataset))))
    recorded: list[np.ndarray] = []
    predicted: list[np.ndarray] = []
    episode: int | None = None
    try:
        for raw in _loader(frames, 1, seed, shuffle=False, num_workers=0):
            frame_episode = int(raw["episode_index"][0])
            if episode is None:
                episode = frame_episode
            elif frame_episode != episode:
                break
            action = raw["action"][0]
            # With the policy's time offsets the action is a chunk; offset 0 is this frame's own.
            recorded.append((action[0] if action.dim() > 1 else action).float().numpy().copy())
            chosen = postprocessor(policy.select_action(preprocessor(raw)))
            predicted.append(chosen[0].float().cpu().numpy())
    finally:
        policy.reset()
    stacked = np.stack(recorded)
    return ActionTrace(
        episode=episode or 0,
        recorded=stacked,
        predicted=np.stack(predicted),
        names=_action_names(dataset, stacked.shape[1]),
    )
