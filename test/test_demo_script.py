"""scripts/demo.sh deletes its output folder only when an earlier demo wrote it."""

from __future__ import annotations

import subprocess

from conftest import REPO


def _demo(out, env_path: str) -> subprocess.CompletedProcess:
    # With LUNAR_RECON_BIN pointing nowhere the demo stops at its first command, right after
    # the folder check: only the guard runs.
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "demo.sh"), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": env_path, "HOME": "/tmp", "LUNAR_RECON_BIN": "/nonexistent"},
        cwd="/",
    )


def test_demo_refuses_to_delete_a_folder_it_did_not_write(tmp_path):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    out = _demo(precious, "/usr/bin:/bin")
    assert out.returncode == 2 and "refusing to delete" in out.stderr
    assert (precious / "chapter1.tex").read_text() == "years of work"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep")
    out = _demo(a_file, "/usr/bin:/bin")
    assert out.returncode == 2 and a_file.read_text() == "keep"


def test_demo_replaces_its_own_previous_output(tmp_path):
    previous = tmp_path / "demo"
    previous.mkdir()
    (previous / ".lunar_recon_demo").write_text("")
    (previous / "stale_report.md").write_text("old")
    _demo(previous, "/usr/bin:/bin")  # fails later (no lunar-recon on this PATH): the guard ran first
    assert not (previous / "stale_report.md").exists()
    assert (previous / ".lunar_recon_demo").exists()
