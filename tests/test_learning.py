"""The learning study, shortened (docs/learning.md, issue #12): Iterative-SPO on the embedded
micro world must raise held-out vote accuracy above the frozen base and above the best
constant-seat policy, without N/A taking over.

It runs `scripts/learning_study.py` itself (the study's commands: `vision-zero eval` of the
base, `vision-zero train` at a fixed seed, `vision-zero eval` of the last checkpoint on the
same held-out games), so a regression anywhere in the loop (rollout, rewards, the vote
gradient, masking, the update, checkpointing, evaluation) shows as a model that does not
learn. It trains the micro profile for 100 iterations on 2 threads (24 minutes on a 2-core
CPU): the copy "vote = the seat my own checks flag" forms after 40-70 iterations, at a point
that moves with the seed and even with the machine (docs/learning.md section 11: the same
60-iteration run reached +21 points on one machine and +9 on another), so no shorter run
shows a gain reliably, and it is kept out of the default suite (`-m "not study"` in
pyproject.toml). Run it with

    bash scripts/test.sh -m study

The margin is the issue's bar for spy identification: 10 points (measured: +13.6 over the
base, +11.0 over the best constant seat).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.study]

ITERATIONS = 100  # the study's full-method runs at both seeds crossed by iteration 70
GAMES = 300  # held-out games, greedy (a game's two votes are one decode)
MARGIN = 0.10  # vote accuracy over the base and over the best constant seat


def test_short_study_beats_base_and_best_constant_seat(repo_root, tmp_path):
    pairs, out = tmp_path / "pairs", tmp_path / "study"
    subprocess.run([sys.executable, "-m", "visionzero.cli.main", "pairs", "--domain", "clevr", "--out", str(pairs)],
                   check=True, timeout=600, capture_output=True)  # fmt: skip
    cmd = [sys.executable, str(repo_root / "scripts/learning_study.py"), "--variants", "full", "--seeds", "0",
           "--jobs", "1", "--iterations", str(ITERATIONS), "--games", str(GAMES), "--pairs", str(pairs),
           "--out", str(out), "--set", "runtime.threads=2", "eval.match=false", "eval.vqa_per_type=0",
           "tracking.enabled=false"]  # fmt: skip
    done = subprocess.run(cmd, cwd=repo_root, timeout=1800, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    base, full = json.loads((out / "summary.json").read_text())
    assert (base["variant"], full["variant"]) == ("base", "full")
    acc = full["game/vote_accuracy"]
    # the base votes by a seat prior that ignores its reasoning: at chance
    assert acc >= base["game/vote_accuracy"] + MARGIN, (acc, base)
    # not one seat voted every time: a constant seat is the best a prior can do
    assert acc >= full["game/best_constant_seat_accuracy"] + MARGIN, (acc, full)
    assert full["game/na_rate"] <= 0.05 and full["game/invalid_rate"] <= 0.05, full
    assert full["game/clue_valid_rate"] >= 0.9, full  # the clues stayed sentences
    assert (out / "curves.png").stat().st_size > 0
