"""Run logs: one JSON object per optimizer step in ``<run>/log.jsonl`` and a PNG of the loss curves.

Each row holds ``step``, ``lr``, ``loss`` (the weighted total), every unweighted loss term by name,
``steps_per_s`` and anything else the trainer adds. A resumed run first drops the rows after the
checkpoint's step, so the file always describes one uninterrupted sequence.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from efficient_sam3.files import atomic_path, write_text_atomic

LOG_FILE = "log.jsonl"
PLOT_FILE = "loss_curves.png"
NON_LOSS_KEYS = ("step", "epoch", "lr", "steps_per_s", "num_matched", "wall_s")


class RunLog:
    """Append-only JSONL log (line-buffered, flushed after every row)."""

    def __init__(self, path: Path, resume_from_step: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_from_step is None:
            self.path.write_text("")
        else:
            kept = [row for row in read_log(self.path) if row["step"] <= resume_from_step] if self.path.exists() else []
            write_text_atomic(self.path, "".join(json.dumps(row) + "\n" for row in kept))
        self._handle = open(self.path, "a", encoding="utf-8")

    def write(self, row: dict) -> None:
        if "step" not in row:
            raise ValueError(f"log rows need a 'step', got keys {sorted(row)}")
        self._handle.write(json.dumps(row) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_log(path: Path) -> list[dict]:
    """Rows of a JSONL log; a malformed line raises naming the file and line."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: malformed log line ({error})") from error
    return rows


def plot_loss_curves(log_path: Path, png_path: Path, title: str = "") -> None:
    """Plot the total loss and every loss term against the step (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(log_path)
    if not rows:
        raise ValueError(f"{log_path}: empty log, nothing to plot")
    names = [key for key in rows[-1] if key not in NON_LOSS_KEYS and isinstance(rows[-1][key], (int, float))]
    columns = 2
    figure_rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(figure_rows, columns, figsize=(10, 2.6 * figure_rows), squeeze=False)
    for axis, name in zip(axes.flat, names):
        measured = [row for row in rows if isinstance(row.get(name), (int, float))]  # diagnostics: some steps only
        steps, values = [row["step"] for row in measured], [row[name] for row in measured]
        axis.plot(steps, values, linewidth=0.6, alpha=0.5, marker="." if len(values) < 50 else None)
        window = max(len(values) // 20, 1)
        if window > 1:  # moving average over ~5% of the run
            smooth = [sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
                      for i in range(len(values))]
            axis.plot(steps, smooth, linewidth=1.2)
        axis.set_title(name, fontsize=9)
        axis.set_xlabel("step", fontsize=8)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(names):]:
        axis.axis("off")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(png_path, suffix=".png") as temp:  # matplotlib picks the format from the suffix
            figure.savefig(temp, dpi=100)
    finally:
        plt.close(figure)
