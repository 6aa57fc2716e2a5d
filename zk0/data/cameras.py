"""Which dataset camera feeds which image input of the policy: one rule for every node and the server.

SmolVLA's pretrained base (lerobot/smolvla_base) takes three images, `observation.images.camera1`
(the scene from above or the front), `camera2` (the wrist) and `camera3` (a second scene view,
from the side), and community datasets name their cameras as their recorders chose. zk0 maps
each dataset camera `observation.images.<name>` onto one of those slots by `ALIASES`:

- a camera belongs to the first slot (camera1, camera2, camera3) one of whose aliases equals its
  name or one of the name's words (split at `_`, `-`, `.` and spaces, case ignored): `front`,
  `top_cam` and `cam_high` go to camera1, `wrist` and `left_wrist` to camera2, `side` to camera3;
- a slot takes one camera: an exact name before a word match, then the earlier alias, then
  the dataset's feature order; every other camera is dropped (the policy never sees it) and
  one log line names them;
- a dataset none of whose cameras maps is refused, naming its cameras and the aliases.

The policy zk0 builds (tiny presets too) declares all three slots, as the pretrained base
does; a dataset lacking some fills the ones it has (SmolVLA skips absent images). The
policy's side of the mapping is a renamed view of the metadata (`CameraMap.policy_metadata`),
the data's side a dataset wrapper that renames each sample's keys (`CameraMappedDataset`).
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from zk0.data.schema import CAMERA_PREFIX, DatasetSchemaError

log = logging.getLogger(__name__)

POLICY_CAMERAS = ("camera1", "camera2", "camera3")  # lerobot/smolvla_base's image inputs, in its order
ALIASES: dict[str, tuple[str, ...]] = {
    "camera1": ("camera1", "image", "top", "overhead", "above", "high", "front", "scene", "main", "laptop"),
    "camera2": ("camera2", "image2", "wrist", "gripper", "hand"),
    "camera3": ("camera3", "image3", "side", "left", "right", "low", "phone", "third"),
}
PAD_SUFFIX = "_is_pad"  # lerobot's flag beside each key queried with time offsets
_WORDS = re.compile(r"[_\-.\s]+")


class CameraMappingError(DatasetSchemaError):
    """A dataset with no camera the policy can take; the message lists its cameras and the aliases."""


def _rank(name: str) -> tuple[str, int, int] | None:
    """(slot, 0 for an exact name or 1 for a word match, alias position) of a camera name."""
    lowered = name.lower()
    words = set(_WORDS.split(lowered))
    for slot in POLICY_CAMERAS:
        for position, alias in enumerate(ALIASES[slot]):
            if lowered == alias:
                return slot, 0, position
            if alias in words:
                return slot, 1, position
    return None


@dataclass(frozen=True)
class CameraMap:
    """Dataset camera key -> policy camera key, and the dataset cameras left out."""

    renames: dict[str, str]
    dropped: tuple[str, ...]

    def _rename(self, mapping: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in mapping.items():
            base = key.removesuffix(PAD_SUFFIX)
            if base in self.dropped:
                continue
            out[self.renames[base] + key[len(base) :] if base in self.renames else key] = value
        return out

    def sample(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """One dataset sample with the policy's camera keys (and their padding flags)."""
        return self._rename(item)

    def policy_metadata(self, meta):
        """A view of lerobot's dataset metadata with the policy's camera names: features and
        stats renamed, dropped cameras gone, and absent slots declared like the first camera."""
        features = self._rename(meta.features)
        first = next(iter(self.renames.values()))
        for slot in POLICY_CAMERAS:
            features.setdefault(CAMERA_PREFIX + slot, dict(features[first]))
        view = copy.copy(meta)  # shallow: the dataset's own metadata stays as it is
        view.info = copy.copy(meta.info)
        view.info.features = features
        view.stats = self._rename(meta.stats) if meta.stats is not None else None
        return view

    def describe(self) -> str:
        pairs = ", ".join(
            f"{k.removeprefix(CAMERA_PREFIX)}->{v.removeprefix(CAMERA_PREFIX)}" for k, v in self.renames.items()
        )
        return pairs + (
            f"; dropped {', '.join(d.removeprefix(CAMERA_PREFIX) for d in self.dropped)}" if self.dropped else ""
        )


def map_cameras(features: Mapping[str, Any], name: str) -> CameraMap:
    """The camera mapping for a dataset's `features` (see the module's rule); `name` for messages."""
    cameras = [key for key in features if key.startswith(CAMERA_PREFIX)]
    ranked = []
    for order, key in enumerate(cameras):
        rank = _rank(key.removeprefix(CAMERA_PREFIX))
        if rank is not None:
            ranked.append((rank[0], rank[1], rank[2], order, key))
    renames: dict[str, str] = {}
    for slot, _exact, _position, _order, key in sorted(ranked):
        target = CAMERA_PREFIX + slot
        if target not in renames.values():
            renames[key] = target
    if not renames:
        known = "; ".join(f"{slot}: {', '.join(ALIASES[slot])}" for slot in POLICY_CAMERAS)
        found = ", ".join(k.removeprefix(CAMERA_PREFIX) for k in cameras) or "none"
        raise CameraMappingError(
            f"dataset {name}: none of its cameras ({found}) has a name zk0 maps onto the policy's image "
            f"inputs ({known}). Record with a camera named after its view, e.g. front or wrist "
            '(lerobot-record --robot.cameras "{front: ...}")'
        )
    dropped = tuple(k for k in cameras if k not in renames)
    mapping = CameraMap(renames=dict(sorted(renames.items(), key=lambda kv: kv[1])), dropped=dropped)
    if dropped:
        log.info("dataset %s: cameras %s", name, mapping.describe())
    return mapping


class CameraMappedDataset:
    """A dataset whose samples carry the policy's camera keys (`CameraMap.sample`)."""

    def __init__(self, dataset, cameras: CameraMap) -> None:
        self.dataset = dataset
        self.cameras = cameras

    @property
    def meta(self):  # the dataset's own metadata (action names, fps) for charts
        return self.dataset.meta

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.cameras.sample(self.dataset[index])
