"""Read, for each sample, only what the policy reads: the camera frames and state at the
policy's observation offsets and the action rows of its chunk.

lerobot's reader (0.6) fetches each time-offset feature with `hf_dataset[key][rows]`. Its
dataset carries a custom transform, and for such a dataset `datasets` formats every column
of those rows: with images stored as images, the 50-row action chunk of SmolVLA decodes 50
frames per camera for every sample, and the current frame is decoded once more for each
observation key queried at offset 0. Here the numeric columns (action, state, timestamp) are
read once per process into tensors and indexed, camera columns are read on their own, and
observation offsets of exactly [0] are dropped: the sample's own row already holds that
frame, and lerobot then returns it without the time axis (images [C,H,W], state [D]), as it
always does for video cameras. SmolVLA reads either form.
"""

from __future__ import annotations

from typing import Any

import torch
from lerobot.datasets.dataset_reader import DatasetReader

OBSERVATION_PREFIX = "observation."


def needed_offsets(delta_timestamps: dict[str, list[float]] | None) -> dict[str, list[float]] | None:
    """`delta_timestamps` without the observation keys whose only offset is the current frame."""
    if not delta_timestamps:
        return None
    kept = {
        key: list(offsets)
        for key, offsets in delta_timestamps.items()
        if not (key.startswith(OBSERVATION_PREFIX) and list(offsets) == [0])
    }
    return kept or None


class ColumnReader(DatasetReader):
    """lerobot's `DatasetReader`, reading each time-offset feature from its own column."""

    def _rows(self, absolute: list[int]) -> list[int]:
        mapping = self._absolute_to_relative_idx
        return absolute if mapping is None else [mapping[i] for i in absolute]

    def _numeric(self, key: str) -> torch.Tensor:
        """The whole column as one tensor, read once per process (a few bytes per frame)."""
        cache: dict[str, torch.Tensor] = self.__dict__.setdefault("_zk0_numeric", {})
        if key not in cache:
            column = self.hf_dataset.select_columns([key]).with_format("numpy")[:][key]
            cache[key] = torch.from_numpy(column)
        return cache[key]

    def _camera(self, key: str) -> Any:
        """The dataset narrowed to one camera column: indexing it decodes that camera only."""
        cache: dict[str, Any] = self.__dict__.setdefault("_zk0_cameras", {})
        if key not in cache:
            cache[key] = self.hf_dataset.select_columns([key])
        return cache[key]

    def _query_hf_dataset(self, query_indices: dict[str, list[int]]) -> dict:
        result: dict = {}
        for key, absolute in query_indices.items():
            if key in self._meta.video_keys:
                continue  # decoded from the video at the queried timestamps
            rows = self._rows(absolute)
            if key in self._meta.camera_keys:
                result[key] = torch.stack(self._camera(key)[rows][key])
            else:
                result[key] = self._numeric(key)[rows]
        return result

    def _get_query_timestamps(
        self, current_ts: float, query_indices: dict[str, list[int]] | None = None
    ) -> dict[str, list[float]]:
        timestamps: dict[str, list[float]] = {}
        for key in self._meta.video_keys:
            if query_indices is not None and key in query_indices:
                timestamps[key] = self._numeric("timestamp")[self._rows(query_indices[key])].tolist()
            else:
                timestamps[key] = [current_ts]
        return timestamps


def read_by_column(dataset: Any) -> Any:
    """Make `dataset` (a LeRobotDataset opened for reading) read as `ColumnReader` does."""
    reader = dataset.reader
    if type(reader) is not DatasetReader:
        raise TypeError(
            f"zk0 reads datasets through lerobot's DatasetReader, and this lerobot made a {type(reader).__name__}: "
            "install the lerobot release pyproject.toml pins"
        )
    # Same state, narrower queries: the reader was built and loaded by lerobot as usual.
    reader.__class__ = ColumnReader
    return dataset
