"""Long jobs report progress in a log, not only on a terminal."""

from __future__ import annotations

import io

from lunar_recon.progress import progress


def test_progress_prints_plain_lines_when_not_on_a_terminal():
    log = io.StringIO()  # not a terminal, as CI, nohup or a launch log
    items = list(progress(range(5), desc="simulate", unit="pair", stream=log, interval_s=0.0))
    assert items == [0, 1, 2, 3, 4]
    lines = log.getvalue().splitlines()
    assert len(lines) == 6  # one per item at interval 0, plus the closing line
    assert lines[-1].startswith("simulate: 5/5 pair (100%)") and "pair/s" in lines[-1]


def test_progress_resumed_job_counts_from_its_start_and_stays_quiet_between_intervals():
    log = io.StringIO()
    list(progress(range(3), desc="distill", unit="step", initial=7, total=10, stream=log, interval_s=3600))
    assert log.getvalue().splitlines() == [log.getvalue().splitlines()[0]]  # only the closing line
    assert log.getvalue().startswith("distill: 10/10 step (100%)")


def test_command_line_job_logs_progress_to_a_pipe(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lunar_recon",
            "simulate",
            "--sequence",
            "rover",
            "--frames",
            "1",
            "--width",
            "64",
            "--height",
            "48",
            "--out",
            str(tmp_path / "bag"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "sequence rover: 1/1 pair (100%)" in out.stderr
