"""Chaos: a training SIGKILLed at random moments, several inside checkpoint writes, and
restarted each time, ends exactly where an uninterrupted run of the same seed ends: the
same weights, byte for byte, and every iteration's metrics once."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from visionzero.train.loop import read_metrics

pytestmark = pytest.mark.slow

ITERATIONS = 6
CHILD = """
import sys
from pathlib import Path
from visionzero.settings import load_settings
from tests.helpers import simple_pairs
from tests.test_train_loop import SMALL, _run
cache, pairs, run, n = sys.argv[1:5]
settings = load_settings(None, [f"model.cache_dir={cache}", *SMALL, f"train.iterations={n}", "train.keep_checkpoints=2"])
_run(settings, Path(run), simple_pairs(Path(pairs), 5), int(n))
"""


def _start(repo_root: Path, cache: Path, pairs: Path, run: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(cache), str(pairs), str(run), str(ITERATIONS)], cwd=repo_root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _writing_checkpoint(run: Path) -> bool:
    return any((run / "checkpoints").glob("*.tmp*"))


def test_sigkills_at_random_moments_change_nothing(tiny_settings, tmp_path, repo_root):
    cache = tiny_settings.model.cache_dir
    straight, chaos = tmp_path / "straight", tmp_path / "chaos"
    child = _start(repo_root, cache, tmp_path / "pairs", straight)
    assert child.wait(timeout=600) == 0, child.stderr.read()

    rng = random.Random(7)
    kills: list[str] = []
    for _ in range(20):  # every launch bounded; 5 kills, then one run to the end
        child = _start(repo_root, cache, tmp_path / "pairs", chaos)
        if len(kills) >= 5:
            assert child.wait(timeout=600) == 0, child.stderr.read()
            break
        # alternately: inside a checkpoint write; at a random moment of the iteration after the
        # next one ends (a fixed clock would miss a run that finishes first on a fast machine)
        in_checkpoint = len(kills) % 2 == 0
        done, deadline = len(read_metrics(chaos)), time.monotonic() + 300
        while child.poll() is None and time.monotonic() < deadline:
            if in_checkpoint and _writing_checkpoint(chaos):
                break
            if not in_checkpoint and len(read_metrics(chaos)) > done:
                time.sleep(rng.uniform(0.0, 1.0))
                break
            time.sleep(0.002)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=60)
            kills.append("checkpoint" if in_checkpoint else "random")
    else:
        pytest.fail("the chaos run did not finish within 20 launches")
    assert kills.count("checkpoint") >= 3 and len(kills) >= 5

    final = f"checkpoints/iter-{ITERATIONS:06d}/model/model.safetensors"
    assert (straight / final).read_bytes() == (chaos / final).read_bytes()
    rows = read_metrics(chaos)
    assert [m["iteration"] for m in rows] == list(range(1, ITERATIONS + 1))  # each once, in order
    same = lambda ms: [{k: v for k, v in m.items() if not k.startswith("time/") and "seconds" not in k  # noqa: E731
                        and "per_s" not in k} for m in ms]  # fmt: skip
    assert same(rows) == same(read_metrics(straight))
