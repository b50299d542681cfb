"""``rollout demo --json F --plot F.png``: an output path that cannot be written is refused
before the run (exit 4, one line naming the option and the path), not with a traceback after a
minute of demo."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollout.cli", "demo", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("option", "make", "why"),
    [
        ("--json", lambda tmp: tmp, "is a directory"),
        ("--plot", lambda tmp: tmp / "timeline.pdf", "must end in .png"),
        ("--plot", lambda tmp: tmp / "afile" / "x.png", "is not a directory"),
        ("--json", lambda tmp: tmp / "afile" / "deeper" / "x.json", "is not a directory"),
    ],
)
def test_an_output_that_cannot_be_written_is_refused_before_the_run(
    tmp_path: Path, option: str, make: Callable[[Path], Path], why: str
) -> None:
    (tmp_path / "afile").write_text("")
    path = make(tmp_path)
    done = demo("--scenario", "good-canary", option, str(path))
    assert done.returncode == 4, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"rollout demo: {option} {path}") and why in lines[0], lines
    assert "sandbox" not in done.stdout  # nothing was started
