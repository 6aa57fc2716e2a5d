"""The SO-100/SO-101 feature contract every node's dataset must meet before training."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STATE_KEY = "observation.state"
ACTION_KEY = "action"
CAMERA_PREFIX = "observation.images."
SO100_JOINTS = (
    "shoulder_pan.pos",
    "shoulder_lift.pos",
    "elbow_flex.pos",
    "wrist_flex.pos",
    "wrist_roll.pos",
    "gripper.pos",
)
SO100_DOF = len(SO100_JOINTS)


class DatasetSchemaError(ValueError):
    """A dataset that does not fit the SO-100/101 schema; the message names each problem."""


def schema_problems(features: Mapping[str, Mapping[str, Any]], fps: Any, tasks: Any) -> list[str]:
    """Every way the dataset metadata departs from the SO-100/101 schema (empty when it fits)."""
    problems: list[str] = []
    for key in (STATE_KEY, ACTION_KEY):
        feature = features.get(key)
        if feature is None:
            problems.append(f"missing feature '{key}' (a {SO100_DOF}-dim float joint vector)")
            continue
        shape = tuple(feature.get("shape", ()))
        if shape != (SO100_DOF,):
            problems.append(f"feature '{key}' has shape {shape}, expected ({SO100_DOF},) for SO-100/101")
        if not str(feature.get("dtype", "")).startswith("float"):
            problems.append(f"feature '{key}' has dtype {feature.get('dtype')!r}, expected a float type")
    cameras = [k for k, f in features.items() if k.startswith(CAMERA_PREFIX)]
    if not cameras:
        problems.append(f"no camera feature: add at least one '{CAMERA_PREFIX}<name>' image or video")
    for key in cameras:
        feature = features[key]
        if feature.get("dtype") not in ("image", "video"):
            problems.append(f"camera '{key}' has dtype {feature.get('dtype')!r}, expected 'image' or 'video'")
        shape = tuple(feature.get("shape", ()))
        if len(shape) != 3 or 3 not in (shape[0], shape[-1]):
            problems.append(f"camera '{key}' has shape {shape}, expected (height, width, 3)")
    if not isinstance(fps, int | float) or fps <= 0:
        problems.append(f"fps is {fps!r}, expected a positive number")
    if not tasks:
        problems.append("no task strings: SmolVLA is language-conditioned, every episode needs a task")
    return problems


def check_so100_schema(features: Mapping[str, Mapping[str, Any]], fps: Any, tasks: Any, name: str) -> None:
    """Raise `DatasetSchemaError` listing every problem, or return when the dataset fits."""
    problems = schema_problems(features, fps, tasks)
    if problems:
        listing = "\n  - ".join(problems)
        raise DatasetSchemaError(
            f"dataset {name} does not match the SO-100/101 schema:\n  - {listing}\n"
            "Record it with an SO-100/SO-101 arm in LeRobot format (v3.0), or convert it, and retry."
        )
