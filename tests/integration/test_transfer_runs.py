"""The ServerApp's round loop with in-process ClientApps (bench/inprocess.py: no Ray, no
SuperLink) in the 16-bit and int8 encodings: the round JSON names the encoding and its
bytes, checkpoints stay float32 and load with lerobot, int8 nodes keep their residual in
their Context state, and a resumed run continues after the latest checkpoint (at the learning
rate scale a plateau had reached)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from bench.inprocess import run_config, run_federation
from zk0.config import FederationSettings
from zk0.federation import protocol as wire
from zk0.federation.checkpoints import load_trainable
from zk0.federation.plateau import RECORD_KEY as PLATEAU
from zk0.federation.transfer import RESIDUAL

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900), pytest.mark.usefixtures("zk0_cache")]


def rounds(run_dir, count):
    return {r: json.loads((run_dir / "metrics" / f"round_{r}.json").read_text()) for r in range(count + 1)}


@pytest.mark.parametrize("transfer", [wire.BF16, wire.INT8_DELTA])
def test_a_run_checkpoints_float32_and_resumes_in_the_same_encoding(transfer, tmp_path, monkeypatch, caplog):
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    from safetensors.numpy import load_file

    from zk0.model.weights import get_trainable_arrays

    monkeypatch.setenv("WANDB_MODE", "disabled")
    small = {"local-steps": 2, "batch-size": 4, "eval-batches": 1, "device": "cpu", "wandb-project": ""}
    config = run_config(
        **small, transfer=transfer, **{"num-server-rounds": 1, "output-dir": str(tmp_path), "run-name": "run"}
    )
    grid = run_federation(config)
    run_dir = tmp_path / "run"
    first = rounds(run_dir, 1)
    assert first[1]["transfer"] == transfer
    assert len(first[1]["train"]["clients"]) == 2 and not first[1]["train"]["rejected"]

    # Checkpoints hold the server's float32 master weights, and lerobot loads them.
    checkpoint = run_dir / "checkpoints" / "round_1"
    assert {t.dtype for t in load_file(str(checkpoint / "model.safetensors")).values()} == {np.dtype(np.float32)}
    loaded = get_trainable_arrays(SmolVLAPolicy.from_pretrained(str(checkpoint)))
    master = load_trainable(checkpoint, list(loaded))
    assert all(np.array_equal(loaded[n], master[n]) for n in master)
    fp32_bytes = sum(a.nbytes for a in master.values())
    assert first[1]["bytes-per-client"] < 0.55 * fp32_bytes  # 16 bits on the way down

    # An int8 node carries what it could not send in its Context state, one array per weight.
    for context in grid.contexts.values():
        carried = context.state.get(RESIDUAL)
        assert (carried is not None) == (transfer == wire.INT8_DELTA)
        if carried is not None:
            assert list(carried.keys()) == list(master)

    # Resume: the same run name, one more round, after the latest checkpoint. Round 1's record
    # says a plateau had scaled the learning rate to a quarter: the resumed round trains at it.
    assert first[1][PLATEAU]["lr-scale"] == 1.0  # plateau-patience 0: off
    first[1][PLATEAU] |= {"lr-scale": 0.25, "proximal-mu": 0.04}
    (run_dir / "metrics" / "round_1.json").write_text(json.dumps(first[1]))
    with caplog.at_level(logging.INFO, logger="zk0.server"):
        run_federation({**config, "num-server-rounds": 2, "resume": True})
    assert "resuming run after round 1" in caplog.text
    after = rounds(run_dir, 2)
    assert after[0] == first[0] and after[1] == first[1], "rounds before the checkpoint re-ran"
    assert after[2]["transfer"] == transfer and len(after[2]["train"]["clients"]) == 2
    assert after[2][PLATEAU]["lr-scale"] == 0.25 and after[2][PLATEAU]["proximal-mu"] == 0.04
    lr = FederationSettings.from_run_config(config).lr
    assert [c[wire.LEARNING_RATE] for c in after[2]["train"]["clients"].values()] == pytest.approx([lr / 4] * 2)
    resumed = load_trainable(run_dir / "checkpoints" / "round_2", list(master))
    assert all(v.dtype == np.float32 for v in resumed.values())
    assert any(not np.array_equal(resumed[n], master[n]) for n in master), "round 2 did not train"
