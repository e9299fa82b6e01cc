"""Iterative-SPO: the training loop, one iteration at a time, resumable.

One iteration (METHOD.md section 6):
  1. take the next B pairs of the training pool and set up B games (seeded by position);
  2. self-play rollout: the current policy plays every seat and the observer (GameEngine);
  3. verify role rewards: decision rewards + group-normalised advantages, zero-sum clue
     rewards + Role Advantage Estimation (pure; train/samples.py);
  4. update ONLY the active stage: clue turns (self-play, "GRPO" stage) or vote turns
     (RLVR stage); the whole game is always played, the other stage runs frozen;
  5. the phase controller reads the votes' accuracy and N/A rate and picks the next stage.
State that must survive a restart (weights, optimizer, schedule, RNG, RAE baselines,
controller, data position) is checkpointed atomically; `resume` continues exactly.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from visionzero.base.stage import starting_spec
from visionzero.fileio import write_text_atomic
from visionzero.game import read_records, write_records
from visionzero.models.loading import load_model
from visionzero.rl.advantages import RaeState
from visionzero.rl.controller import PhaseController, PhaseState
from visionzero.rollout.engine import GameEngine, derive_seed, setup_games
from visionzero.rollout.hf_backend import HFPolicy
from visionzero.rollout.types import Completion, Policy, Sampling
from visionzero.settings import Settings
from visionzero.settings.resume import RESUMABLE_CHANGES, settings_changes  # noqa: F401 - the loop's rule, kept importable here
from visionzero.settings.secrets import redacted_dict
from visionzero.train.checkpoint import (
    latest_checkpoint,
    latest_is,
    load_training_state,
    save_checkpoint,
    set_rng_state,
)
from visionzero.train.samples import ScoredGames, score_games, training_samples
from visionzero.train.update import PolicyTrainer, share_of

log = logging.getLogger("visionzero.train")
METRICS = "metrics.jsonl"


@dataclass(frozen=True)
class PairRef:
    """The minimum the loop needs from a pair: id, domain and absolute image paths."""

    id: str
    domain: str
    original: str
    edited: str
    hint: str | None = None  # what differs in the spy's image (from the manifest's change log)


def pair_pool(dataset_dirs: Sequence[str | Path], split: str = "train") -> list[PairRef]:
    """Pairs of `split` from one or more dataset folders (each with a manifest.jsonl)."""
    from visionzero.game.prompts import pair_hint
    from visionzero.pairs.manifest import read_manifest

    pool = []
    for folder in map(Path, dataset_dirs):
        for rec in read_manifest(folder):
            if rec.split == split:
                hint = pair_hint(rec.domain, rec.changes)
                pool.append(PairRef(rec.id, rec.domain, str(folder / rec.original), str(folder / rec.edited), hint))
    if not pool:
        raise ValueError(f"no {split} pairs in {', '.join(map(str, dataset_dirs))}")
    return pool


class ResumeMismatch(ValueError):
    """The run folder holds checkpoints of a run with different settings."""


class AdaptersOff:
    """A policy over a LoRA-wrapped model with the adapters switched off: the starting model."""

    def __init__(self, policy: Policy, peft_model):
        self.policy, self.peft_model = policy, peft_model

    def generate(self, requests: Sequence, sampling: Sampling, seed: int = 0) -> list[list[Completion]]:
        with self.peft_model.disable_adapter():
            return self.policy.generate(requests, sampling, seed)


class IterativeSPO:
    """Owns the policy, its optimizer, the controller and the RAE baselines of one run."""

    def __init__(self, settings: Settings, run_dir: str | Path, pool: Sequence[PairRef], restart_on_change: bool = False):
        """Start a run in `run_dir`, or resume it from its newest checkpoint.

        A checkpoint made with different settings (other than RESUMABLE_CHANGES) raises
        ResumeMismatch, or, with `restart_on_change`, is discarded and the run starts over
        (what `dvc repro` / `dvc exp run -S` need: new params mean a new run).
        """
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        lock_run_dir(self.run_dir)  # one trainer per run folder (two would interleave metrics)
        self.ckpt_root = self.run_dir / "checkpoints"
        self.pool = list(pool)
        random.Random(derive_seed(settings.runtime.seed, "pool")).shuffle(self.pool)
        self.iteration = 0
        self.data_position = 0
        self.rae = RaeState()
        self.controller = PhaseController(settings.train.phase)

        resume_from = latest_checkpoint(self.ckpt_root)
        if resume_from is not None:
            saved = json.loads((resume_from / "state.json").read_text())["settings"]
            changed = settings_changes(saved, redacted_dict(settings))  # state.json holds them redacted
            if changed and not restart_on_change:
                more = f" (+{len(changed) - 3} more)" if len(changed) > 3 else ""
                raise ResumeMismatch(
                    f"{self.run_dir} holds a run with other settings ({', '.join(changed[:3])}{more}); "
                    "use a new run folder or restart"
                )
            if changed:
                log.info("settings changed (%s): starting %s over", ", ".join(changed[:3]), self.run_dir)
                for sub in ("checkpoints", "iterations"):
                    shutil.rmtree(self.run_dir / sub, ignore_errors=True)
                (self.run_dir / METRICS).unlink(missing_ok=True)
                resume_from = None
        if resume_from is None:  # rows of a run killed before its first checkpoint are not this run's
            _truncate_metrics(self.run_dir / METRICS, 0)
        self.base_spec = starting_spec(settings)  # model.spec, or the tiny model's base stage
        if resume_from is None:
            self.loaded, reference = load_model(settings.model, settings.runtime, spec=self.base_spec), None
        elif settings.train.lora.enabled:  # the base plus the trained adapter, still trainable
            from peft import PeftModel

            self.loaded, reference = load_model(settings.model, settings.runtime, spec=self.base_spec), None
            self.loaded.model = PeftModel.from_pretrained(self.loaded.model, str(resume_from / "model"), is_trainable=True)
        else:
            self.loaded = load_model(settings.model, settings.runtime, spec=str(resume_from / "model"))
            # the KL anchor is the starting model; without KL it is never loaded
            reference = load_model(settings.model, settings.runtime, spec=self.base_spec).model if settings.train.kl_beta > 0 else None
        self.trainer = PolicyTrainer(self.loaded, settings.train, reference=reference, seed=derive_seed(settings.runtime.seed, "init"))
        self.worker = None
        if settings.rollout.backend == "worker":  # generation in its own process (vLLM on GPU)
            from visionzero.rollout.remote import WorkerProcess

            r = settings.rollout
            self.worker = WorkerProcess(
                self.loaded.path, r.worker_engine, r.worker_python,
                extra_args=["--micro-batch-size", str(r.micro_batch_size), "--gpu-memory-utilization", str(r.gpu_memory_utilization)],
                allow=[self.run_dir / "checkpoints"], timeout=r.worker_timeout, heartbeat=r.worker_heartbeat,
            )  # fmt: skip
            self.policy = self.worker.policy
        else:
            self.policy = HFPolicy(self.loaded, settings.rollout.micro_batch_size)
        if resume_from is not None:
            self._restore(resume_from)

    # ------------------------------------------------------------------ state
    def _state(self) -> dict:
        return {
            "iteration": self.iteration,
            "data_position": self.data_position,
            "rae": self.rae.to_dict(),
            "controller": self.controller.state.to_dict(),
            "base_model": self.base_spec,
            "settings": redacted_dict(self.settings),  # no password of a tracking URI on disk
        }

    def _restore(self, path: Path) -> None:
        state, optimizer, scheduler, rng = load_training_state(path)
        self.iteration = state["iteration"]
        self.data_position = state["data_position"]
        self.rae = RaeState.from_dict(state["rae"])
        self.controller = PhaseController(self.settings.train.phase, PhaseState.from_dict(state["controller"]))
        self.trainer.optimizer.load_state_dict(optimizer)
        self.trainer.scheduler.load_state_dict(scheduler)
        set_rng_state(rng)
        _truncate_metrics(self.run_dir / METRICS, self.iteration)
        log.info("resumed from %s at iteration %d", path, self.iteration)

    def checkpoint_now(self) -> Path:
        """The checkpoint of the current policy: the newest one if it is current, else a new one."""
        if latest_is(self.ckpt_root, self.iteration):
            return latest_checkpoint(self.ckpt_root)
        return self.save()

    def save(self) -> Path:
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        return save_checkpoint(
            self.ckpt_root, self.iteration, model, self.loaded.processor,
            self.trainer.optimizer, self.trainer.scheduler, self._state(), self.settings.train.keep_checkpoints,
        )  # fmt: skip

    # ------------------------------------------------------------------ one iteration
    def next_pairs(self) -> list[PairRef]:
        n = self.settings.train.games_per_iteration
        return [self.pool[(self.data_position + i) % len(self.pool)] for i in range(n)]

    def iteration_dir(self, iteration: int | None = None) -> Path:
        """Where iteration t (default: the next one) keeps its games and scores."""
        t = self.iteration + 1 if iteration is None else iteration
        return self.run_dir / "iterations" / f"iter-{t:06d}"

    def play(self) -> Path:
        """Self-play rollout of the next iteration; returns the game records file."""
        s = self.settings
        start = time.perf_counter()
        games = setup_games(
            self.next_pairs(), s.game, s.runtime.seed, first_index=self.data_position, balanced_seats=s.train.balanced_seats
        )
        self.trainer.model.eval()
        seed = derive_seed(s.runtime.seed, "iteration", self.iteration)
        stats = GameEngine(self.policy, s.game).play(games, seed=seed)
        folder = self.iteration_dir()
        path = write_records(folder / "games.jsonl", games)
        timing = {**stats.as_dict(), "time/rollout_s": time.perf_counter() - start}
        (folder / "rollout.json").write_text(json.dumps(timing, sort_keys=True))
        return path

    def score(self, games_path: Path) -> Path:
        """Verify role rewards of played games (pure); returns the scores file."""
        start = time.perf_counter()
        scored = score_games(read_records(games_path), self.settings.rewards, self.rae)
        if scored.warning:
            log.warning(scored.warning)
        data = {**scored.to_dict(), "seconds": time.perf_counter() - start}
        path = Path(games_path).with_name("scores.json")
        path.write_text(json.dumps(data, sort_keys=True))
        return path

    def update(self, games_path: Path, scores_path: Path, checkpoint: bool = False) -> dict:
        """Train the active stage on scored games, step the controller, checkpoint; metrics.

        `checkpoint` forces a checkpoint whatever train.checkpoint_every says (a step run in
        its own process must leave the state on disk for the next one).
        """
        start = time.perf_counter()
        games = read_records(games_path)
        raw = json.loads(Path(scores_path).read_text())
        scored = ScoredGames.from_dict(raw)
        stage = self.controller.stage
        self.trainer.model.train()
        other = "clue" if stage == "decision" else "decision"
        anchors = []
        if self.settings.train.anchor_inactive:
            anchors = share_of(training_samples(games, scored, other), self.settings.train.anchor_share,
                               derive_seed(self.settings.runtime.seed, "anchors", self.iteration))
        update = self.trainer.step(training_samples(games, scored, stage), stage, anchors)
        self.rae = scored.rae
        switch = self.controller.update(scored.stats["vote_accuracy"], scored.stats["na_rate"])
        self.iteration += 1
        self.data_position += len(games)
        rollout = json.loads(Path(games_path).with_name("rollout.json").read_text())
        metrics = {
            "iteration": self.iteration,
            "stage": stage,
            "next_stage": self.controller.stage,
            "switched": switch is not None,
            **{f"game/{k}": v for k, v in scored.stats.items()},
            **update.as_dict(),
            **rollout,
            "controller/acc_ema": self.controller.state.acc_ema,
            "controller/na_ema": self.controller.state.na_ema,
            "time/score_s": raw["seconds"],
            "time/update_s": time.perf_counter() - start,
        }
        metrics["time/iteration_s"] = metrics["time/rollout_s"] + metrics["time/score_s"] + metrics["time/update_s"]
        if switch is not None:
            log.info("stage switch after iteration %d: %s -> %s (%s)", self.iteration, switch.from_stage, switch.to_stage, switch.reason)
            metrics["switch_reason"] = switch.reason
        with (self.run_dir / METRICS).open("a") as fh:
            fh.write(json.dumps(metrics, sort_keys=True) + "\n")
        every = self.settings.train.checkpoint_every
        if checkpoint or self.worker or self.iteration % every == 0 or self.iteration >= self.settings.train.iterations:
            saved = self.save()
            if self.worker is not None:  # the worker generates the next iteration with this policy
                self.worker.policy.load(saved / "model")
        return metrics

    def eval_players(self) -> tuple[Policy, Policy | None]:
        """(current policy, starting model or None) as they already sit in memory.

        Evaluating during training with these loads nothing: the candidate is the live policy
        (or the worker, which holds the newest checkpoint), and the frozen base opponent is the
        KL reference (a frozen copy, or with LoRA the same network with its adapters off).
        None: the starting model is not in memory (kl_beta 0) and must be loaded.
        """
        self.trainer.model.eval()  # update() switches back to train()
        base = None
        if self.settings.train.lora.enabled:
            peft_model = self.trainer.accelerator.unwrap_model(self.trainer.model)
            base = AdaptersOff(HFPolicy(self.loaded, self.settings.rollout.micro_batch_size), peft_model)
        elif self.trainer.ref_model is not None:
            base = HFPolicy(replace(self.loaded, model=self.trainer.ref_model), self.settings.rollout.micro_batch_size)
        return self.policy, base

    def close(self) -> None:
        """Stop the generation worker, if one runs."""
        if self.worker is not None:
            self.worker.close()
            self.worker = None

    def run_iteration(self) -> dict:
        """play -> score -> update: one whole Iterative-SPO iteration."""
        games = self.play()
        return self.update(games, self.score(games))

    def train(self, iterations: int | None = None, on_iteration: Callable[[dict], None] | None = None) -> list[dict]:
        """Run until `iterations` (default train.iterations) are done; checkpoint as configured."""
        target = iterations if iterations is not None else self.settings.train.iterations
        history = []
        while self.iteration < target:
            metrics = self.run_iteration()
            if self.iteration == target and not latest_is(self.ckpt_root, self.iteration):
                self.save()  # always end on a checkpoint, even when stopping early
            history.append(metrics)
            if on_iteration:
                on_iteration(metrics)
        return history


class RunLocked(RuntimeError):
    """Another process trains in this run folder."""


_LOCKS: dict[str, int] = {}  # run folder -> the open lock file this process holds


def lock_run_dir(run_dir: Path) -> None:
    """Hold `<run_dir>/.lock` (flock) for the rest of this process; RunLocked, naming the
    holder's pid, if another process holds it. Re-entrant within a process (the Prefect
    session and the tests reopen a run); the OS drops the lock when the process dies."""
    key = str(run_dir.resolve())
    if key in _LOCKS:
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunLocked(f"{run_dir} is in use by another trainer (pid {holder}); wait for it or use another run folder") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _LOCKS[key] = fd


def _parse_lines(path: Path) -> tuple[list[dict], int]:
    """The metric rows of `path` and the number of lines that are not JSON (a write torn by a
    crash leaves half a line at the end)."""
    rows, torn = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            torn += 1
    return rows, torn


def _truncate_metrics(path: Path, iterations: int) -> None:
    """Keep exactly the rows up to the checkpoint's iteration: rows written after it (before a
    crash) and torn lines go, so a resumed run logs each iteration once."""
    if not path.exists():
        return
    rows, torn = _parse_lines(path)
    if torn:
        log.warning("%s: dropped %d torn line(s) left by a crash", path, torn)
    kept = [r for r in rows if isinstance(r, dict) and r.get("iteration", 0) <= iterations]
    write_text_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / METRICS
    return _parse_lines(path)[0] if path.exists() else []
