"""Charts of a run, redrawn after each round under `<output-dir>/<run>/plots/` (Pillow only).

- `rounds.png`: from the run's round JSON files (`metrics/round_<N>.json`), the server-eval
  loss per evaluation dataset and the mean client train loss, the nodes per round (accepted,
  rejected, failed) and the bytes of weights sent to nodes per round.
- `actions-<label>-round_<N>.png`: after each server evaluation, per evaluation dataset, the
  recorded and the predicted joint trajectories over one of its episodes.

Evaluation datasets appear under the labels the server's metrics use (`eval-` and a short hash,
`zk0.privacy.server_eval_label`), never by path or repo id: the charts also go to wandb.
Files are replaced atomically. Drawing never fails a round: a problem is logged as a warning
once and the run goes on.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from PIL import Image, ImageDraw, ImageFont

from zk0.privacy import server_eval_label

if TYPE_CHECKING:
    import numpy as np

    from zk0.federation.global_model import GlobalModel
    from zk0.training.local import ActionTrace

log = logging.getLogger(__name__)

SIZE = (1200, 900)
ACTION_FRAMES = 64  # frames of the episode an action chart follows: a few predictions, cheap
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
RECORDED, PREDICTED = "#222222", "#e4572e"
ACCEPTED, REJECTED, FAILED = "#2ca02c", "#d62728", "#9e9e9e"
GRID, AXIS = "#e3e3e3", "#444444"
Font = ImageFont.ImageFont | ImageFont.FreeTypeFont


class ImageLog(Protocol):
    def log_images(self, server_round: int, images: dict[str, Path]) -> None: ...


def _font(size: int) -> Font:
    return ImageFont.load_default(size=size)


def _number(value: object) -> float | None:
    """A finite figure from the round JSON, or None (absent, null, NaN, not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def nice_ticks(low: float, high: float, count: int = 5, integer: bool = False) -> list[float]:
    """About `count` round-numbered ticks covering [low, high]."""
    if high <= low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * 0.999)
    if integer:
        step = max(1.0, round(step))
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [i * step for i in range(first, last + 1)]


def _tick_text(value: float, ticks: Sequence[float]) -> str:
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    exponent = math.floor(math.log10(step) + 1e-9)
    decimals = max(0, -exponent) + (1 if round(step / 10**exponent, 3) == 2.5 else 0)
    text = f"{value:.{decimals}f}"
    return "0" if text.strip("-0.") == "" else text


class Panel:
    """One set of axes: maps data to pixels inside `box` (left, top, right, bottom)."""

    def __init__(
        self,
        draw: ImageDraw.ImageDraw,
        box: tuple[int, int, int, int],
        xs: list[float],
        ys: list[float],
        x_pad: float = 0.0,
        integer_y: bool = False,
    ) -> None:
        self.draw, self.box = draw, box
        low = min(xs)
        high = max(*xs, low + 1)
        self.x_range = (low - x_pad, high + x_pad)  # bars need half a round either side
        self.x_ticks = [t for t in nice_ticks(low, high, 8, integer=True) if low <= t <= high]
        self.y_ticks = nice_ticks(min(ys), max(ys), 4 if integer_y else 5, integer=integer_y)

    def x(self, value: float) -> float:
        left, _, right, _ = self.box
        low, high = self.x_range
        return left + (value - low) / (high - low) * (right - left)

    def y(self, value: float) -> float:
        _, top, _, bottom = self.box
        low, high = self.y_ticks[0], self.y_ticks[-1]
        return bottom - (value - low) / ((high - low) or 1.0) * (bottom - top)

    def axes(self, title: str, font: Font, small: Font, y_text: Callable[[float], str] | None = None) -> None:
        left, top, right, bottom = self.box
        for value in self.y_ticks:
            y = self.y(value)
            self.draw.line((left, y, right, y), fill=GRID)
            text = y_text(value) if y_text else _tick_text(value, self.y_ticks)
            self.draw.text((left - 6, y), text, fill=AXIS, font=small, anchor="rm")
        for value in self.x_ticks:
            x = self.x(value)
            self.draw.line((x, bottom, x, bottom + 4), fill=AXIS)
            self.draw.text((x, bottom + 6), _tick_text(value, self.x_ticks), fill=AXIS, font=small, anchor="ma")
        self.draw.rectangle(self.box, outline=AXIS)
        self.draw.text(((left + right) / 2, top - 6), title, fill="black", font=font, anchor="md")

    def line(self, points: list[tuple[float, float]], color: str, width: int = 3, marker: int = 4) -> None:
        pixels = [(self.x(x), self.y(y)) for x, y in points]
        if len(pixels) > 1:
            self.draw.line(pixels, fill=color, width=width, joint="curve")
        for px, py in pixels if marker else []:
            self.draw.ellipse((px - marker, py - marker, px + marker, py + marker), fill=color)

    def stacked_bars(self, x: float, parts: list[tuple[float, str]], width: float) -> None:
        base = 0.0
        for value, color in parts:
            if value > 0:
                box = (self.x(x) - width / 2, self.y(base + value), self.x(x) + width / 2, self.y(base))
                self.draw.rectangle(box, fill=color)
            base += value

    def bar_width(self) -> float:
        per_round = self.x(1.0) - self.x(0.0)
        return max(2.0, min(36.0, 0.7 * per_round))


def legend(draw: ImageDraw.ImageDraw, xy: tuple[int, int], entries: list[tuple[str, str]], font: Font) -> None:
    x, y = xy
    for text, color in entries:
        draw.rectangle((x, y + 4, x + 22, y + 12), fill=color)
        draw.text((x + 30, y + 8), text, fill="black", font=font, anchor="lm")
        y += 24


def _save(image: Image.Image, path: Path) -> Path:
    """Atomically: a reader (or wandb) never sees half a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    tmp.replace(path)
    return path


def _short(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _human_bytes(value: float, unit: tuple[str, float]) -> str:
    return f"{value / unit[1]:g} {unit[0]}"


def _byte_unit(peak: float) -> tuple[str, float]:
    for name, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if peak >= scale:
            return name, scale
    return "B", 1.0


def _nodes(report: object) -> tuple[int, int, int]:
    """(accepted, rejected, failed) of a round report (`RoundReport.as_dict`)."""
    if not isinstance(report, dict):
        return 0, 0, 0
    clients, rejected = report.get("clients"), report.get("rejected")
    failed = _number(report.get("failed")) or 0
    return (
        len(clients) if isinstance(clients, dict) else 0,
        len(rejected) if isinstance(rejected, dict) else 0,
        int(failed),
    )


def draw_rounds(rounds: list[dict[str, Any]], path: Path, title: str, name: Callable[[str], str] = str) -> Path:
    """The rounds chart from round records as `RoundRecorder` writes them; `name` turns a
    server-eval dataset key into its legend text."""
    if not rounds:
        raise ValueError("no round records to draw")
    image = Image.new("RGB", SIZE, "white")
    draw = ImageDraw.Draw(image)
    big, font, small = _font(24), _font(17), _font(15)
    left, right = 90, SIZE[0] - 330
    xs = [float(r["round"]) for r in rounds]
    draw.text((SIZE[0] / 2, 14), title, fill="black", font=big, anchor="ma")

    # Losses: one line per server-eval dataset, and the mean client train loss.
    curves: dict[str, list[tuple[float, float]]] = {}
    for record in rounds:
        server_eval = record.get("server-eval")
        for key, value in server_eval.items() if isinstance(server_eval, dict) else []:
            if key != "mean" and (number := _number(value)) is not None:
                curves.setdefault(f"server {name(key)}", []).append((record["round"], number))
        if (number := _number(record.get("train-loss"))) is not None:
            curves.setdefault("client train loss (mean)", []).append((record["round"], number))
    values = [v for points in curves.values() for _, v in points] or [0.0, 1.0]
    losses = Panel(draw, (left, 90, right, 430), xs, values, x_pad=0.5)
    losses.axes("Loss per round (lower is better)", font, small)
    entries = []
    for i, (label, points) in enumerate(curves.items()):
        color = PALETTE[-1] if label.startswith("client") else PALETTE[i % (len(PALETTE) - 1)]
        losses.line(points, color)
        entries.append((_short(label, 38), color))
    legend(draw, (right + 20, 90), entries or [("no losses recorded yet", FAILED)], small)

    # Nodes: accepted, rejected, failed train replies, stacked.
    counts = {r["round"]: _nodes(r.get("train")) for r in rounds}
    peak = max([sum(c) for c in counts.values()] + [1])
    nodes = Panel(draw, (left, 500, right, 660), xs, [0.0, peak], x_pad=0.5, integer_y=True)
    nodes.axes("Nodes per round (train replies)", font, small)
    width = nodes.bar_width()
    for x, (accepted, rejected, failed) in counts.items():
        nodes.stacked_bars(x, [(accepted, ACCEPTED), (rejected, REJECTED), (failed, FAILED)], width)
    legend(draw, (right + 20, 500), [("accepted", ACCEPTED), ("rejected", REJECTED), ("failed", FAILED)], small)

    # Bytes: the weights sent to each node (bytes-per-client) times the nodes they went to.
    sent: dict[float, float] = {}
    for record in rounds:
        per_node = _number(record.get("bytes-per-client"))
        if per_node is not None:
            messages = sum(_nodes(record.get("train"))) + sum(_nodes(record.get("client-eval")))
            sent[record["round"]] = per_node * messages
    unit = _byte_unit(max(sent.values(), default=0.0))
    volume = Panel(draw, (left, 730, right, 840), xs, [0.0, max(sent.values(), default=1.0)], x_pad=0.5)
    volume.axes(f"Weights sent to nodes per round ({unit[0]})", font, small, lambda v: _human_bytes(v, unit))
    for x, total in sent.items():
        volume.stacked_bars(x, [(total, PALETTE[0])], width)
    legend(draw, (right + 20, 730), [("train + evaluate messages", PALETTE[0])], small)
    draw.text(((left + right) / 2, SIZE[1] - 18), "round", fill="black", font=font, anchor="mm")
    return _save(image, path)


def draw_actions(trace: ActionTrace, path: Path, title: str) -> Path:
    """Recorded vs predicted trajectory of each action dimension, one small panel each."""
    recorded, predicted = trace.recorded, trace.predicted
    dims = recorded.shape[1]
    cols = 1 if dims == 1 else 2 if dims <= 4 else 3
    rows = math.ceil(dims / cols)
    image = Image.new("RGB", SIZE, "white")
    draw = ImageDraw.Draw(image)
    big, font, small = _font(22), _font(16), _font(13)
    draw.text((SIZE[0] / 2, 12), title, fill="black", font=big, anchor="ma")
    legend(draw, (SIZE[0] // 2 - 170, 44), [("recorded", RECORDED)], font)
    legend(draw, (SIZE[0] // 2 + 30, 44), [("predicted", PREDICTED)], font)
    top, bottom, margin_left, gap = 100, SIZE[1] - 40, 80, 30
    cell_w = (SIZE[0] - margin_left - 20) / cols
    cell_h = (bottom - top) / rows
    frames = [float(f) for f in range(len(recorded))]
    for d in range(dims):
        row, col = divmod(d, cols)
        x0, y0 = margin_left + col * cell_w, top + row * cell_h + 24
        box = (int(x0), int(y0), int(x0 + cell_w - margin_left + 10), int(y0 + cell_h - 24 - gap))
        panel = Panel(draw, box, frames or [0.0], _finite(recorded[:, d]) + _finite(predicted[:, d]))
        panel.axes(_short(trace.names[d], 40), font, small)
        panel.line(_points(recorded[:, d]), RECORDED, width=3, marker=0)
        panel.line(_points(predicted[:, d]), PREDICTED, width=2, marker=0)
    draw.text((SIZE[0] / 2, SIZE[1] - 14), "frame of the episode", fill="black", font=font, anchor="mm")
    return _save(image, path)


def _finite(column: np.ndarray) -> list[float]:
    return [float(v) for v in column if math.isfinite(float(v))] or [0.0]


def _points(column: np.ndarray) -> list[tuple[float, float]]:
    return [(float(i), float(v)) for i, v in enumerate(column) if math.isfinite(float(v))]


def read_rounds(metrics_dir: Path, warn: Callable[[str, str], None]) -> list[dict[str, Any]]:
    """The run's round records in round order; an unreadable file is skipped with a warning."""
    rounds = []
    for path in metrics_dir.glob("round_*.json"):
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict) or _number(record.get("round")) is None:
                raise ValueError("not a round record")
        except (OSError, ValueError) as err:
            warn(f"read {path.name}", f"{path} skipped: {err}")
            continue
        rounds.append(record)
    return sorted(rounds, key=lambda r: r["round"])


class RunPlots:
    """The charts of one run, drawn after each round; `after_round` never raises."""

    def __init__(
        self,
        run_dir: Path,
        eval_datasets: Sequence[str] = (),
        recorder: ImageLog | None = None,
        max_frames: int = ACTION_FRAMES,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.plots_dir = self.run_dir / "plots"
        self.eval_datasets = list(eval_datasets)
        self.recorder = recorder
        self.max_frames = max_frames
        self._warned: set[str] = set()

    def after_round(self, server_round: int, model: GlobalModel | None = None, arrays: Any = None) -> None:
        """Redraw rounds.png; with `model` (a server-eval round), the action charts of
        `arrays` too; then hand the PNGs to wandb."""
        start = time.monotonic()
        images: dict[str, Path] = {}
        if (rounds := self._guard("the rounds chart", self.draw_rounds)) is not None:
            images["plots/rounds"] = rounds
        if model is not None and arrays is not None:
            traces = self._guard("the action charts", lambda: model.action_traces(arrays, self.max_frames)) or {}
            for name, trace in traces.items():
                path = self._guard("an action chart", partial(self.draw_actions, server_round, name, trace))
                if path is not None:
                    images[f"plots/actions-{self.label(name)}"] = path
        recorder = self.recorder
        if images and recorder is not None:
            self._guard("the charts to wandb", lambda: recorder.log_images(server_round, images))
        log.debug("round %d: %d chart(s) in %.1fs", server_round, len(images), time.monotonic() - start)

    def draw_rounds(self) -> Path | None:
        rounds = read_rounds(self.run_dir / "metrics", self._warn)
        if not rounds:
            self._warn("no rounds", f"no round JSON under {self.run_dir / 'metrics'} yet")
            return None
        last = rounds[-1]["round"]
        title = f"Run {_short(self.run_dir.name, 40)}: rounds {rounds[0]['round']}-{last}"
        return draw_rounds(rounds, self.plots_dir / "rounds.png", title, self.legend_name)

    def draw_actions(self, server_round: int, name: str, trace: ActionTrace) -> Path:
        label = self.label(name)
        frames = len(trace.recorded)
        title = f"Round {server_round}: actions on {self.legend_name(name)}, episode {trace.episode}, {frames} frames"
        return draw_actions(trace, self.plots_dir / f"actions-{label}-round_{server_round}.png", title)

    def label(self, name: str) -> str:
        """The evaluation dataset's label: the same as in the server's metrics (`zk0.privacy`)."""
        return server_eval_label(name)

    def legend_name(self, name: str) -> str:
        """`eval 2 (eval-…)`: the position in `server-eval-datasets` says which one it is."""
        position = f"eval {self.eval_datasets.index(name) + 1}" if name in self.eval_datasets else "eval"
        return f"{position} ({self.label(name)})"

    def _guard[T](self, what: str, work: Callable[[], T]) -> T | None:
        try:
            return work()
        except Exception as err:  # noqa: BLE001 (a chart must never fail a round)
            self._warn(what, f"could not draw {what}: {type(err).__name__}: {err}")
            return None

    def _warn(self, key: str, message: str) -> None:
        """Each kind of problem once as a warning (the run goes on without the chart), then at debug."""
        if key in self._warned:
            log.debug("plots: %s", message)
            return
        self._warned.add(key)
        log.warning("plots: %s; the run goes on (later occurrences are logged at debug level)", message)
