"""Per-run charts: rounds.png from the round JSON files the recorder writes, action charts of
recorded vs predicted trajectories, anonymous labels in file names, and no failed rounds."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
from PIL import Image, ImageStat

from zk0.federation.metrics import RoundRecorder
from zk0.federation.plots import SIZE, RunPlots, nice_ticks
from zk0.federation.strategy import RoundReport
from zk0.privacy import server_eval_label
from zk0.training.local import ActionTrace

EVAL = ["hf:someone/private-eval@main", "local:/data/secret-eval"]
LABEL = re.compile(r"eval-[0-9a-f]{12}")


def client(label: str, loss: float) -> dict:
    return {"dataset-label": label, "num-examples": 160.0, "train-loss": loss}


def record_round(recorder: RoundRecorder, server_round: int, accepted: int = 3, rejected: int = 1) -> None:
    """A round record as the ServerApp builds it (reports from `RoundReport`)."""
    train = RoundReport(
        clients={str(100 + i): client(f"ds-{i:016x}", 2.0 / server_round + 0.1 * i) for i in range(accepted)},
        rejected={str(900 + i): {"dataset-label": "", "reason": "update norm too large"} for i in range(rejected)},
        failed=1 if server_round % 2 else 0,
    )
    train.adopted = True
    recorder.write(
        server_round,
        {
            "train": train.as_dict(),
            "train-loss": train.mean("train-loss"),
            "client-eval-start": RoundReport().as_dict(),
            "client-eval-start-loss": None,
            "transfer": "bf16",
            "bytes-per-client": 3_500_000,
            "server-eval": {EVAL[0]: 1.5 / server_round, EVAL[1]: 1.2 / server_round, "mean": 1.35 / server_round},
            "seconds": 12.5,
            "seconds-by-step": {"train-messages": 10.0, "server-eval": 2.5},
        },
    )


@pytest.fixture
def run(tmp_path):
    run_dir = tmp_path / "run-1"
    recorder = RoundRecorder(run_dir, run_dir.name, project="", config={})  # no project: no wandb
    recorder.write(0, {"server-eval": {EVAL[0]: 2.0, EVAL[1]: 1.9, "mean": 1.95}, "checkpoint": "x"})
    return run_dir, recorder


def assert_chart(path) -> Image.Image:
    image = Image.open(path)
    image.load()
    assert image.size == SIZE and image.format == "PNG"
    colours = image.getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 8, "a chart has lines, bars and text in several colours"
    assert max(ImageStat.Stat(image.convert("L")).var) > 100, "not blank"
    return image


class Images:
    def __init__(self) -> None:
        self.logged: list[tuple[int, dict]] = []

    def log_images(self, server_round, images):
        self.logged.append((server_round, dict(images)))


def test_rounds_chart_is_drawn_from_the_round_files_and_redrawn_each_round(run):
    run_dir, recorder = run
    images = Images()
    plots = RunPlots(run_dir, EVAL, images)
    plots.after_round(0)
    path = run_dir / "plots" / "rounds.png"
    first = assert_chart(path).tobytes()
    for server_round in (1, 2):
        record_round(recorder, server_round)
        plots.after_round(server_round)
        assert_chart(path)
    assert Image.open(path).tobytes() != first
    assert [r for r, _ in images.logged] == [0, 1, 2]
    assert images.logged[-1][1] == {"plots/rounds": path}
    assert not list((run_dir / "plots").glob("*.tmp")), "written atomically: no temp file left"


def test_a_broken_or_missing_round_file_is_a_warning_not_a_failed_round(tmp_path, caplog):
    run_dir = tmp_path / "run-2"
    plots = RunPlots(run_dir, EVAL)
    with caplog.at_level(logging.WARNING, logger="zk0.federation.plots"):
        plots.after_round(1)  # no metrics at all yet
    assert "no round JSON" in caplog.text
    assert not (run_dir / "plots" / "rounds.png").exists()

    recorder = RoundRecorder(run_dir, run_dir.name, project="", config={})
    record_round(recorder, 1)
    (run_dir / "metrics" / "round_2.json").write_text("{ half a file")
    (run_dir / "metrics" / "round_3.json").write_text("[1, 2]")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="zk0.federation.plots"):
        plots.after_round(3)
        plots.after_round(3)
    assert_chart(run_dir / "plots" / "rounds.png")  # drawn from what could be read
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings  # one per broken file, not again on the next round
    assert any("round_2.json" in w for w in warnings) and any("round_3.json" in w for w in warnings)


def test_drawing_and_logging_errors_never_reach_the_round(run, caplog):
    run_dir, recorder = run

    class Broken:
        def log_images(self, server_round, images):
            raise RuntimeError("wandb is down")

    class NoModel:
        def action_traces(self, arrays, max_frames):
            raise RuntimeError("CUDA out of memory")

    plots = RunPlots(run_dir, EVAL, Broken())
    with caplog.at_level(logging.WARNING, logger="zk0.federation.plots"):
        for server_round in (1, 2):
            record_round(recorder, server_round)
            plots.after_round(server_round, NoModel(), {})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings  # each problem once
    assert "CUDA out of memory" in caplog.text and "wandb is down" in caplog.text
    assert_chart(run_dir / "plots" / "rounds.png")


def test_action_chart_file_names_carry_anonymous_labels_stable_across_a_resume(run):
    run_dir, _ = run
    frames = np.arange(40, dtype=np.float32)[:, None]
    recorded = np.hstack([np.sin(frames / 6 + d) * 30 + d for d in range(6)])
    trace = ActionTrace(episode=3, recorded=recorded, predicted=recorded + 4, names=[f"joint {d}" for d in range(6)])

    class Model:
        def action_traces(self, arrays, max_frames):
            assert max_frames == 64
            return dict.fromkeys(EVAL, trace)

    images = Images()
    RunPlots(run_dir, EVAL, images).after_round(0, Model(), {})
    charts = sorted((run_dir / "plots").glob("actions-*.png"))
    assert len(charts) == 2
    for chart in charts:
        assert re.fullmatch(rf"actions-{LABEL.pattern}-round_0\.png", chart.name), chart.name
        assert_chart(chart)
    assert set(images.logged[0][1]) == {"plots/rounds"} | {f"plots/actions-{c.name[8:25]}" for c in charts}
    resumed = RunPlots(run_dir, EVAL)
    assert {f"actions-{resumed.label(name)}-round_0.png" for name in EVAL} == {c.name for c in charts}
    # The same label as the server's metrics give the dataset: one name for it everywhere.
    assert {resumed.label(name) for name in EVAL} == {server_eval_label(name) for name in EVAL}
    assert not any(name in chart.name for name in EVAL for chart in charts)


def test_recorded_vs_predicted_actions_of_the_tiny_policy(tmp_path, tiny_policy, synth_meta, synth_dataset):
    from lerobot.datasets.factory import resolve_delta_timestamps

    from zk0.data.loading import open_dataset
    from zk0.model.factory import build_processors
    from zk0.training.local import action_trace

    pre, post = build_processors(tiny_policy.config, synth_meta.stats, "cpu")
    delta = resolve_delta_timestamps(tiny_policy.config, synth_meta)
    dataset = open_dataset(f"local:{synth_dataset}", [4, 5], delta)
    trace = action_trace(tiny_policy, pre, post, dataset, max_frames=24, seed=1)
    dims = synth_meta.features["action"]["shape"][0]
    assert trace.recorded.shape == trace.predicted.shape == (24, dims)
    assert trace.episode == 4 and len(trace.names) == dims
    assert np.isfinite(trace.predicted).all()
    first_frame = dataset[0]["action"][0].numpy()
    np.testing.assert_allclose(trace.recorded[0], first_frame, rtol=1e-6)
    assert not tiny_policy._queues["action"], "the policy's action queue is left empty"

    chart = RunPlots(tmp_path / "run", [f"local:{synth_dataset}"]).draw_actions(5, f"local:{synth_dataset}", trace)
    assert LABEL.search(chart.name) and synth_dataset.name not in chart.name
    assert_chart(chart)


@pytest.mark.parametrize(
    ("low", "high", "integer"), [(0.0, 1.0, False), (0.013, 0.021, False), (2.0, 2.0, False), (0, 37, True)]
)
def test_ticks_cover_the_data_with_round_steps(low, high, integer):
    ticks = nice_ticks(low, high, integer=integer)
    assert ticks[0] <= low and ticks[-1] >= high and 3 <= len(ticks) <= 12
    if integer:
        assert all(float(t).is_integer() for t in ticks)
