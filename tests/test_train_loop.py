"""Iterative-SPO on the tiny model: exact resume, and RL that visibly learns a verifiable target."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from visionzero.game import read_records
from visionzero.models import load_model
from visionzero.models.tiny import ensure_tiny
from visionzero.rl.rewards import group_normalize
from visionzero.rollout.engine import balanced_seat
from visionzero.rollout.hf_backend import HFPolicy
from visionzero.rollout.types import Sampling
from visionzero.settings import load_settings
from visionzero.train.loop import IterativeSPO, read_metrics
from visionzero.train.samples import TrainSample
from visionzero.train.update import PolicyTrainer

from .helpers import ScriptedVoter, simple_pairs

pytestmark = pytest.mark.slow

SMALL = [
    "runtime.device=cpu", "game.n_players=3", "game.rounds=1", "game.group_size=4",
    "game.clue.max_new_tokens=6", "game.decision.max_new_tokens=6", "train.games_per_iteration=2",
    "train.iterations=4", "train.lr=1e-3", "train.phase.mode=alternate", "train.micro_batch_size=4",
]  # fmt: skip


def _run(settings, run_dir, pool, iterations):
    spo = IterativeSPO(settings, run_dir, pool)
    spo.policy = ScriptedVoter(spo.policy, settings.game.n_players, HFPolicy(spo.loaded))
    try:
        return spo.train(iterations)
    finally:
        spo.close()


def _comparable(metrics):
    return [{k: v for k, v in m.items() if not k.startswith("time/") and "seconds" not in k and "per_s" not in k} for m in metrics]


def test_resume_continues_exactly(tiny_settings, tmp_path):
    s = load_settings(None, [f"model.cache_dir={tiny_settings.model.cache_dir}", *SMALL])
    pool = simple_pairs(tmp_path / "pairs", 5)
    _run(s, tmp_path / "straight", pool, 4)
    _run(s, tmp_path / "resumed", pool, 2)
    assert json.loads((tmp_path / "resumed/checkpoints/iter-000002/state.json").read_text())["iteration"] == 2
    _run(s, tmp_path / "resumed", pool, 4)  # a new process would do the same: state comes from disk

    a = load_file(tmp_path / "straight/checkpoints/iter-000004/model/model.safetensors")
    b = load_file(tmp_path / "resumed/checkpoints/iter-000004/model/model.safetensors")
    base = load_file(ensure_tiny(s.model) / "model.safetensors")
    assert any(not torch.equal(a[k], base[k]) for k in a)  # training really changed the weights
    assert all(torch.equal(a[k], b[k]) for k in a)
    straight, resumed = read_metrics(tmp_path / "straight"), read_metrics(tmp_path / "resumed")
    assert [m["stage"] for m in straight] == ["decision", "clue", "decision", "clue"]
    assert all(m["update/samples"] > 0 for m in straight)
    assert _comparable(straight) == _comparable(resumed)
    assert sorted(p.name for p in (tmp_path / "resumed/checkpoints").iterdir()) == ["iter-000003", "iter-000004", "latest"]
    assert (tmp_path / "straight/iterations/iter-000004/games.jsonl").exists()


def test_balanced_seats_give_every_iterations_games_as_many_spies_in_each_seat(tiny_settings, tmp_path):
    over = ["game.rounds=1", "game.group_size=2", "game.clue.max_new_tokens=4", "game.decision.max_new_tokens=4",
            "train.games_per_iteration=8", "train.balanced_seats=true"]  # fmt: skip
    s = load_settings(None, [f"model.cache_dir={tiny_settings.model.cache_dir}", "runtime.device=cpu", *over])
    spo = IterativeSPO(s, tmp_path / "run", simple_pairs(tmp_path / "pairs", 5))
    try:
        for position in (0, 8):  # the iteration's place in the data stream sets its seats
            spo.data_position = position
            seats = [g.spy_seat for g in read_records(spo.play())]
            assert sorted(seats) == [1, 1, 2, 2, 3, 3, 4, 4]
            assert seats == [balanced_seat(s.runtime.seed, position + i, 4) for i in range(8)]
    finally:
        spo.close()


@pytest.mark.parametrize("share", [1.0, 0.25])
def test_anchor_share_passes_that_share_of_the_other_stages_turns(tiny_settings, tmp_path, share):
    over = [*SMALL, "train.games_per_iteration=4", "train.anchor_inactive=true", f"train.anchor_share={share}"]
    s = load_settings(None, [f"model.cache_dir={tiny_settings.model.cache_dir}", *over])
    metrics = _run(s, tmp_path / "run", simple_pairs(tmp_path / "pairs", 5), 1)
    clue_turns = 4 * s.game.n_players * s.game.rounds  # the decision stage's anchors: every clue turn
    assert metrics[-1]["stage"] == "decision" and metrics[-1]["update/anchors"] == round(clue_turns * share)


def test_resume_survives_a_torn_metrics_line_and_logs_each_iteration_once(tiny_settings, tmp_path):
    s = load_settings(None, [f"model.cache_dir={tiny_settings.model.cache_dir}", *SMALL])
    pool, run = simple_pairs(tmp_path / "pairs", 5), tmp_path / "run"
    _run(s, run, pool, 2)
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write('{"iteration": 3, "stage": "deci')  # a kill in the middle of a write (was: no resume, ever)
    _run(s, run, pool, 3)
    assert [m["iteration"] for m in read_metrics(run)] == [1, 2, 3]


@pytest.mark.parametrize("damage", ["empty", "missing", "incomplete", "truncated-weights", "truncated-optimizer"])
def test_a_damaged_latest_pointer_resumes_from_the_newest_complete_checkpoint(tiny_settings, tmp_path, damage):
    """(was: a silent restart from iteration 0, then pruning deleted the new checkpoints)"""
    s = load_settings(None, [f"model.cache_dir={tiny_settings.model.cache_dir}", *SMALL])
    pool, run = simple_pairs(tmp_path / "pairs", 5), tmp_path / "run"
    _run(s, run, pool, 3)
    ckpts = run / "checkpoints"
    if damage == "empty":
        (ckpts / "latest").write_text("")
    elif damage == "missing":
        (ckpts / "latest").unlink()
    elif damage == "incomplete":  # `latest` names a checkpoint whose optimizer state was cut to nothing
        (ckpts / "iter-000003" / "optimizer.pt").write_bytes(b"")
    else:  # a file of the newest checkpoint cut in half (was: a 30-line traceback, no fallback)
        name = {"truncated-weights": "model/model.safetensors", "truncated-optimizer": "optimizer.pt"}[damage]
        f = ckpts / "iter-000003" / name
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    want = 3 if damage in ("empty", "missing") else 2
    spo = IterativeSPO(s, run, pool)
    assert spo.iteration == want
    spo.close()
    _run(s, run, pool, 4)
    assert (ckpts / "iter-000004").is_dir() and (ckpts / "latest").read_text() == "iter-000004"
    assert [m["iteration"] for m in read_metrics(run)] == [1, 2, 3, 4]


def test_a_second_trainer_in_the_same_run_folder_exits_in_one_line(tiny_settings, tmp_path, repo_root):
    import subprocess
    import sys

    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, pathlib; from visionzero.train.loop import lock_run_dir; "
         "lock_run_dir(pathlib.Path(sys.argv[1])); print('held', flush=True); time.sleep(60)", str(run)],
        stdout=subprocess.PIPE, text=True, cwd=repo_root,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        result = subprocess.run(
            [sys.executable, "-m", "visionzero.cli.main", "train", "--pairs", str(tmp_path), "--run-dir", str(run),
             "--set", f"model.cache_dir={tiny_settings.model.cache_dir}"],
            capture_output=True, text=True, cwd=repo_root, timeout=120,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert f"pid {holder.pid}" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    finally:
        holder.kill()
        holder.wait(timeout=30)
    s = load_settings(None, [f"model.cache_dir={tiny_settings.model.cache_dir}", *SMALL])
    _run(s, run, simple_pairs(tmp_path / "pairs", 5), 1)  # the holder died: the lock went with it


def test_rows_of_a_run_killed_before_its_first_checkpoint_are_not_kept(tiny_settings, tmp_path):
    s = load_settings(None, [f"model.cache_dir={tiny_settings.model.cache_dir}", *SMALL])
    pool, run = simple_pairs(tmp_path / "pairs", 5), tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"iteration": 1, "stage": "decision"}\n')  # no checkpoint was written
    _run(s, run, pool, 1)
    rows = read_metrics(run)
    assert [m["iteration"] for m in rows] == [1] and "update/samples" in rows[0]


def test_rl_learns_a_verifiable_target(tiny_settings, tmp_path):
    """Reward = share of completion tokens from a fixed target set (~1/8 of the vocab at start).

    The RLVR path (group-normalised rewards -> clipped PG step) must raise it clearly; a sign
    error would push it down, a masking bug (training the prompt or padding) would stall it.
    """
    torch.manual_seed(0)
    s = load_settings(None, [f"model.cache_dir={tiny_settings.model.cache_dir}", "runtime.device=cpu",
                             "train.lr=2e-3", "train.warmup_ratio=0", "train.iterations=1000", "train.kl_beta=0"])  # fmt: skip
    loaded = load_model(s.model, s.runtime)
    trainer, policy = PolicyTrainer(loaded, s.train), HFPolicy(loaded)
    image = simple_pairs(tmp_path / "p", 1)[0].original
    vocab = len(loaded.tokenizer)
    target = set(range(vocab - vocab // 8, vocab))

    class Chat:
        messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Answer."}]}]

    def reward(ids):
        return sum(i in target for i in ids) / max(1, len(ids))

    curve = []
    for step in range(40):
        (group,) = policy.generate([Chat()], Sampling(8, 1.0, n=16), seed=step)
        rewards = [reward(c.token_ids) for c in group]
        curve.append(sum(rewards) / len(rewards))
        advantages = group_normalize(rewards)
        samples = [TrainSample(c.prompt_token_ids, c.token_ids, [image], a, "decision") for c, a in zip(group, advantages)]
        trainer.step(samples, "decision")
    start, end = sum(curve[:5]) / 5, sum(curve[-5:]) / 5
    print(f"reward {start:.2f} -> {end:.2f}")
    assert end > start + 0.3, f"reward {start:.2f} -> {end:.2f}"


def test_changed_settings_refuse_resume_or_restart(tiny_settings, tmp_path):
    from visionzero.train.loop import ResumeMismatch, settings_changes

    s = load_settings(None, [f"model.cache_dir={tiny_settings.model.cache_dir}", *SMALL, "train.iterations=1"])
    pool = simple_pairs(tmp_path / "pairs", 3)
    _run(s, tmp_path / "run", pool, 1)
    longer = s.model_copy(update={"train": s.train.model_copy(update={"iterations": 2})})
    assert IterativeSPO(longer, tmp_path / "run", pool).iteration == 1  # more iterations: resume
    other = s.model_copy(update={"train": s.train.model_copy(update={"lr": 5e-4})})
    with pytest.raises(ResumeMismatch, match="train.lr"):
        IterativeSPO(other, tmp_path / "run", pool)
    fresh = IterativeSPO(other, tmp_path / "run", pool, restart_on_change=True)
    assert fresh.iteration == 0 and not (tmp_path / "run/checkpoints").exists()
    assert settings_changes({"train": {"lr": 1, "iterations": 3}}, {"train": {"lr": 1, "iterations": 9}}) == []


def test_lora_run_resumes_and_its_checkpoint_loads_merged(tiny_settings, tmp_path):
    s = load_settings(None, [f"model.cache_dir={tiny_settings.model.cache_dir}", *SMALL, "train.lora.enabled=true", "train.lora.r=4"])
    pool = simple_pairs(tmp_path / "pairs", 4)
    _run(s, tmp_path / "straight", pool, 3)
    _run(s, tmp_path / "resumed", pool, 1)
    _run(s, tmp_path / "resumed", pool, 3)
    assert _comparable(read_metrics(tmp_path / "straight")) == _comparable(read_metrics(tmp_path / "resumed"))
    merged = load_model(s.model, s.runtime, spec=str(tmp_path / "resumed/checkpoints/iter-000003/model"))
    base = load_model(s.model, s.runtime)
    names = [n for n, _ in base.model.named_parameters()]
    assert [n for n, _ in merged.model.named_parameters()] == names  # a plain model again
    assert any(not torch.equal(a, b) for a, b in zip(merged.model.parameters(), base.model.parameters()))
