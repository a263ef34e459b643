"""The suite passes from any shell: its child processes start with the default SIGINT
disposition even when the shell that started pytest ignored SIGINT (a background job)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD_SAYS = [
    sys.executable,
    "-c",
    "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)",
]


def test_a_child_of_the_suite_handles_sigint():
    assert subprocess.run(CHILD_SAYS, capture_output=True, text=True).stdout.strip() == "True"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_the_suite_started_with_sigint_ignored_still_gives_children_the_default():
    # What `make test &` does to pytest: SIGINT ignored from the start.
    assert subprocess.run(CHILD_SAYS, capture_output=True, text=True,
                          preexec_fn=_ignore_sigint).stdout.strip() == "False"  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "tests/test_suite_signals.py::test_a_child_of_the_suite_handles_sigint"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        preexec_fn=_ignore_sigint,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout
