"""Every wait has a limit: steps in another environment, and what they leave behind."""

from __future__ import annotations

import time

import pytest


def test_a_stuck_step_under_runtime_python_fails_at_its_limit(tmp_path, repo_root):
    """`runtime.python` steps ran with no time limit; a stuck one hung the flow for good."""
    from tasks.session import StepFailed, run_step

    stuck = tmp_path / "python"
    stuck.write_text("#!/bin/sh\nexec sleep 120\n")
    stuck.chmod(0o755)
    overrides = [f"runtime.python={stuck}", "runtime.step_timeout=2"]
    start = time.monotonic()
    with pytest.raises(StepFailed, match=r"did not finish within 2 s \(runtime.step_timeout\)"):
        run_step("play", str(repo_root / "params.yaml"), overrides, str(tmp_path / "run"), [str(tmp_path / "pairs")])
    assert time.monotonic() - start < 60
