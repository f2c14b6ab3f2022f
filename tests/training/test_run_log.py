"""training.run_log: the log and the loss plot are written whole, with the usual mode."""

import os
import stat

from training.run_log import RunLog, plot_loss_curves, read_log


def test_plot_and_resumed_log_get_the_usual_mode(tmp_path):
    log = tmp_path / "log.jsonl"
    old = os.umask(0o022)
    try:
        with RunLog(log) as run_log:
            for step in (1, 2, 3):
                run_log.write({"step": step, "loss": 1.0 / step, "mask": 0.5 / step})
        plot_loss_curves(log, tmp_path / "loss_curves.png")
        RunLog(log, resume_from_step=2).close()  # drops the rows after the checkpoint, atomically
    finally:
        os.umask(old)
    assert [row["step"] for row in read_log(log)] == [1, 2]
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"log.jsonl": 0o644, "loss_curves.png": 0o644}  # mkstemp's 0600 before, no temp left
