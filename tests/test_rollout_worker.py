"""The generation worker in its own process: same tokens as in-process, weights swapped live."""

from __future__ import annotations

import os

import pytest

from visionzero.game import clue_request
from visionzero.models import load_model
from visionzero.models.tiny import ensure_tiny
from visionzero.rollout.engine import GameEngine, setup_games
from visionzero.rollout.hf_backend import HFPolicy
from visionzero.rollout.remote import WorkerError, WorkerProcess
from visionzero.rollout.types import Sampling
from visionzero.settings import load_settings

from .helpers import simple_pairs

pytestmark = pytest.mark.slow


def test_worker_matches_in_process_and_loads_new_weights(tiny_settings, tmp_path):
    s = load_settings(None, [f"model.cache_dir={tiny_settings.model.cache_dir}", "runtime.threads=1",
                             "game.clue.max_new_tokens=8", "game.decision.max_new_tokens=8", "game.group_size=3"])  # fmt: skip
    base = ensure_tiny(s.model)
    games = setup_games(simple_pairs(tmp_path / "p", 3), s.game, seed=0)
    requests = [clue_request(g, 1, 1) for g in games]
    sampling = Sampling(8, 1.0, n=2)
    local = HFPolicy(load_model(s.model, s.runtime))
    with WorkerProcess(base) as worker:
        assert worker.process.pid != os.getpid()
        remote = worker.policy
        assert remote.health()["version"] == 0
        got, want = remote.generate(requests, sampling, seed=3), local.generate(requests, sampling, seed=3)
        assert [[c.token_ids for c in cs] for cs in got] == [[c.token_ids for c in cs] for cs in want]
        assert got[0][0].prompt_token_ids == want[0][0].prompt_token_ids

        # a new policy (here: a copy with one weight changed) is loaded without a restart
        changed = load_model(s.model, s.runtime)
        with __import__("torch").no_grad():
            changed.model.lm_head.weight.mul_(-1.0)
        changed.model.save_pretrained(tmp_path / "new")
        changed.processor.save_pretrained(tmp_path / "new")
        assert remote.load(tmp_path / "new")["version"] == 1
        after = remote.generate(requests, Sampling(8, 0.0), seed=3)
        expected = HFPolicy(load_model(s.model, s.runtime, spec=str(tmp_path / "new"))).generate(requests, Sampling(8, 0.0), seed=3)
        assert [c[0].token_ids for c in after] == [c[0].token_ids for c in expected]

        # the engine plays whole games through the worker
        fresh = setup_games(simple_pairs(tmp_path / "q", 2), s.game, seed=1)
        GameEngine(remote, s.game).play(fresh, seed=0)
        assert all(len(g.decision_turns) == 3 and g.turns[0].completion_ids for g in fresh)

        with pytest.raises(WorkerError, match="load failed"):
            remote.load(tmp_path / "missing")
        assert remote.health()["version"] == 1  # a failed load leaves the worker serving


def test_training_with_a_worker_gives_the_in_process_result(tiny_settings, tmp_path):
    """rollout.backend=worker: each iteration's checkpoint is loaded by the worker process,
    and the run is the same as with in-process generation (the same HF engine behind it)."""
    from visionzero.train.loop import read_metrics

    from .test_train_loop import SMALL, _comparable, _run

    base = [f"model.cache_dir={tiny_settings.model.cache_dir}", *SMALL, "train.iterations=2"]
    pool = simple_pairs(tmp_path / "pairs", 4)
    _run(load_settings(None, base), tmp_path / "local", pool, 2)
    _run(load_settings(None, [*base, "rollout.backend=worker"]), tmp_path / "worker", pool, 2)
    assert _comparable(read_metrics(tmp_path / "local")) == _comparable(read_metrics(tmp_path / "worker"))
