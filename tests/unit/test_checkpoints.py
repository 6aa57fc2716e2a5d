import numpy as np

from zk0.federation.checkpoints import latest_checkpoint, load_trainable, save_checkpoint
from zk0.model.factory import build_processors
from zk0.model.weights import get_trainable_arrays, set_trainable_arrays


def test_checkpoint_round_trip_and_latest_skips_partial_ones(tmp_path, tiny_policy, synth_meta):
    pre, post = build_processors(tiny_policy.config, synth_meta.stats, "cpu")
    rng = np.random.default_rng(0)
    saved = {}
    for server_round in (0, 1, 2):
        arrays = {
            n: rng.standard_normal(a.shape).astype(np.float32) for n, a in get_trainable_arrays(tiny_policy).items()
        }
        set_trainable_arrays(tiny_policy, arrays)
        save_checkpoint(tmp_path, server_round, tiny_policy, pre, post, {"run": "t"})
        saved[server_round] = arrays
    (tmp_path / "checkpoints" / "round_9").mkdir()  # interrupted write: no state file
    (tmp_path / "checkpoints" / ".round_3.partial").mkdir()

    found = latest_checkpoint(tmp_path)
    assert found is not None and found[0] == 2
    loaded = load_trainable(found[1], list(saved[2]))
    assert list(loaded) == list(saved[2])
    assert all(np.array_equal(loaded[n], saved[2][n]) for n in loaded)
    assert latest_checkpoint(tmp_path / "elsewhere") is None
