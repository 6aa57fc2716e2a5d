import json
import shutil

import pytest

from zk0.data.loading import open_metadata, split_episodes
from zk0.data.schema import DatasetSchemaError, schema_problems
from zk0.data.uri import DatasetURIError

GOOD = {
    "observation.state": {"dtype": "float32", "shape": (6,)},
    "action": {"dtype": "float32", "shape": (6,)},
    "observation.images.front": {"dtype": "video", "shape": (480, 640, 3)},
}


def test_so100_features_fit():
    assert schema_problems(GOOD, 30, ["pick"]) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"observation.state": None}, "missing feature 'observation.state'"),
        ({"action": {"dtype": "float32", "shape": (7,)}}, "'action' has shape (7,)"),
        ({"action": {"dtype": "int64", "shape": (6,)}}, "'action' has dtype 'int64'"),
        ({"observation.images.front": None}, "no camera feature"),
        ({"observation.images.front": {"dtype": "string", "shape": (1,)}}, "camera 'observation.images.front'"),
    ],
)
def test_each_schema_problem_is_named(change, expected):
    features = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    problems = schema_problems(features, 30, ["pick"])
    assert any(expected in p for p in problems), problems


def test_fps_and_tasks_are_required():
    problems = schema_problems(GOOD, 0, [])
    assert any("fps" in p for p in problems) and any("task" in p for p in problems)


def test_synthetic_dataset_passes_the_check(synth_dataset):
    meta = open_metadata(f"local:{synth_dataset}")
    assert meta.total_episodes == 6 and meta.features["action"]["shape"] == (6,)


def test_wrong_schema_on_disk_fails_before_training(synth_dataset, tmp_path):
    broken = tmp_path / "seven-dof"
    shutil.copytree(synth_dataset, broken)
    info_path = broken / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["features"]["observation.state"]["shape"] = [7]
    info_path.write_text(json.dumps(info))
    with pytest.raises(DatasetSchemaError, match=r"'observation.state' has shape \(7,\)"):
        open_metadata(f"local:{broken}")


def test_missing_dir_and_non_dataset_dir_are_clear(tmp_path):
    with pytest.raises(DatasetURIError, match="does not exist"):
        open_metadata(f"local:{tmp_path / 'nope'}")
    with pytest.raises(DatasetURIError, match="not a LeRobot dataset"):
        open_metadata(f"local:{tmp_path}")


def test_episode_split_is_deterministic_disjoint_and_complete():
    a = split_episodes(10, 0.3, seed=4)
    assert a == split_episodes(10, 0.3, seed=4)
    assert set(a.train).isdisjoint(a.eval) and sorted(a.train + a.eval) == list(range(10))
    assert len(a.eval) == 3
    assert split_episodes(10, 0.3, seed=5) != a
    tiny = split_episodes(2, 0.1, seed=0)
    assert len(tiny.eval) == 1 and len(tiny.train) == 1
