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
    with WorkerProcess(base, allow=[tmp_path]) as worker:
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


def test_every_worker_wait_is_bounded_and_the_worker_is_locked_down(tiny_settings, tmp_path):
    """Token on every request; /load only from allowed folders; an idle client does not block
    /generate; a SIGSTOPped worker fails the call within its heartbeats (it hung before)."""
    import json
    import signal
    import socket
    import time
    import urllib.error
    import urllib.request

    from visionzero.rollout.remote import RemotePolicy

    s = load_settings(None, [f"model.cache_dir={tiny_settings.model.cache_dir}", "runtime.threads=1"])
    base = ensure_tiny(s.model)
    games = setup_games(simple_pairs(tmp_path / "p", 2), s.game, seed=0)
    requests = [clue_request(g, 1, 1) for g in games]
    with WorkerProcess(base, timeout=60, heartbeat=1.0) as worker:
        remote = worker.policy
        for token in (None, "wrong"):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            with pytest.raises(urllib.error.HTTPError) as denied:
                urllib.request.urlopen(urllib.request.Request(remote.url + "/health", headers=headers), timeout=10)
            assert denied.value.code == 401
        with pytest.raises(WorkerError, match="outside the worker's allowed folders"):
            remote.load(tmp_path)  # not the model, not an allowed root
        assert "VZ_WORKER_TOKEN" not in " ".join(open(f"/proc/{worker.process.pid}/cmdline").read().split("\0"))

        idle = socket.create_connection(remote.url.removeprefix("http://").split(":"), timeout=5)  # connects, sends nothing
        try:
            assert len(remote.generate(requests, Sampling(4, 1.0), seed=0)) == 2
        finally:
            idle.close()

        os.kill(worker.process.pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            with pytest.raises(WorkerError, match="stopped"):
                remote.generate(requests, Sampling(4, 1.0), seed=0)
            assert time.monotonic() - start < 30
            blind = RemotePolicy(remote.url, remote.token, timeout=2.0, heartbeat=0.5)  # no liveness: the clock alone
            with pytest.raises(WorkerError, match="no answer within 2 s"):
                blind.generate(requests, Sampling(4, 1.0), seed=0)
        finally:
            os.kill(worker.process.pid, signal.SIGCONT)
        assert json.loads(json.dumps(remote.health()))["version"] == 0  # serving again after SIGCONT


def test_the_worker_dies_with_its_parent(tiny_settings, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    s = load_settings(None, [f"model.cache_dir={tiny_settings.model.cache_dir}", "runtime.threads=1"])
    base = ensure_tiny(s.model)
    script = (
        "import sys, time\n"
        "from visionzero.rollout.remote import WorkerProcess\n"
        f"w = WorkerProcess({str(base)!r})\n"
        "print(w.process.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        os.kill(pid, 0)  # the worker runs
        parent.send_signal(signal.SIGKILL)  # the trainer is killed: no close(), no atexit
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            # reap it if it became our child's zombie (it is reparented to init, which reaps)
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the worker outlived its killed parent by 30 s")
    finally:
        parent.kill()
