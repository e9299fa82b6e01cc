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
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from visionzero.game import write_records
from visionzero.models.loading import load_model
from visionzero.rl.advantages import RaeState
from visionzero.rl.controller import PhaseController, PhaseState
from visionzero.rollout.engine import GameEngine, derive_seed, setup_games
from visionzero.rollout.hf_backend import HFPolicy
from visionzero.settings import Settings, settings_dict
from visionzero.train.checkpoint import (
    latest_checkpoint,
    load_training_state,
    save_checkpoint,
    set_rng_state,
)
from visionzero.train.samples import score_games, training_samples
from visionzero.train.update import PolicyTrainer

log = logging.getLogger("visionzero.train")
METRICS = "metrics.jsonl"


@dataclass(frozen=True)
class PairRef:
    """The minimum the loop needs from a pair: id, domain and absolute image paths."""

    id: str
    domain: str
    original: str
    edited: str


def pair_pool(dataset_dirs: Sequence[str | Path], split: str = "train") -> list[PairRef]:
    """Pairs of `split` from one or more dataset folders (each with a manifest.jsonl)."""
    from visionzero.pairs.manifest import read_manifest

    pool = []
    for folder in map(Path, dataset_dirs):
        for rec in read_manifest(folder):
            if rec.split == split:
                pool.append(PairRef(rec.id, rec.domain, str(folder / rec.original), str(folder / rec.edited)))
    if not pool:
        raise ValueError(f"no {split} pairs in {', '.join(map(str, dataset_dirs))}")
    return pool


class IterativeSPO:
    """Owns the policy, its optimizer, the controller and the RAE baselines of one run."""

    def __init__(self, settings: Settings, run_dir: str | Path, pool: Sequence[PairRef]):
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.ckpt_root = self.run_dir / "checkpoints"
        self.pool = list(pool)
        random.Random(derive_seed(settings.runtime.seed, "pool")).shuffle(self.pool)
        self.iteration = 0
        self.data_position = 0
        self.rae = RaeState()
        self.controller = PhaseController(settings.train.phase)

        resume_from = latest_checkpoint(self.ckpt_root)
        base = load_model(settings.model, settings.runtime)
        self.base_spec = base.path
        if resume_from is None:
            self.loaded, reference = base, None
        else:
            self.loaded = load_model(settings.model, settings.runtime, spec=str(resume_from / "model"))
            reference = base.model
        self.trainer = PolicyTrainer(self.loaded, settings.train, reference=reference)
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
            "settings": settings_dict(self.settings),
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

    def run_iteration(self, games_path: Path | None = None) -> dict:
        """Play, score, update the active stage, step the controller; return the metrics."""
        s = self.settings
        t0 = time.perf_counter()
        stage = self.controller.stage
        games = setup_games(self.next_pairs(), s.game, s.runtime.seed, first_index=self.data_position)
        self.trainer.model.eval()
        rollout = GameEngine(self.policy, s.game).play(games, seed=derive_seed(s.runtime.seed, "iteration", self.iteration))
        if games_path is not None:
            write_records(games_path, games)
        t1 = time.perf_counter()
        scored = score_games(games, s.rewards, self.rae)
        if scored.warning:
            log.warning(scored.warning)
        samples = training_samples(games, scored, stage)
        t2 = time.perf_counter()
        self.trainer.model.train()
        update = self.trainer.step(samples, stage)
        t3 = time.perf_counter()
        self.rae = scored.rae
        switch = self.controller.update(scored.stats["vote_accuracy"], scored.stats["na_rate"])
        self.iteration += 1
        self.data_position += len(games)
        metrics = {
            "iteration": self.iteration,
            "stage": stage,
            "next_stage": self.controller.stage,
            "switched": switch is not None,
            **{f"game/{k}": v for k, v in scored.stats.items()},
            **update.as_dict(),
            **rollout.as_dict(),
            "controller/acc_ema": self.controller.state.acc_ema,
            "controller/na_ema": self.controller.state.na_ema,
            "time/rollout_s": t1 - t0,
            "time/score_s": t2 - t1,
            "time/update_s": t3 - t2,
            "time/iteration_s": time.perf_counter() - t0,
        }
        if switch is not None:
            log.info("stage switch at iteration %d: %s -> %s (%s)", self.iteration, switch.from_stage, switch.to_stage, switch.reason)
            metrics["switch_reason"] = switch.reason
        with (self.run_dir / METRICS).open("a") as fh:
            fh.write(json.dumps(metrics, sort_keys=True) + "\n")
        return metrics

    def train(self, iterations: int | None = None, on_iteration: Callable[[dict], None] | None = None) -> list[dict]:
        """Run until `iterations` (default train.iterations) are done; checkpoint as configured."""
        target = iterations if iterations is not None else self.settings.train.iterations
        self.run_dir.mkdir(parents=True, exist_ok=True)
        history = []
        while self.iteration < target:
            metrics = self.run_iteration(self.run_dir / "games" / f"iter-{self.iteration + 1:06d}.jsonl")
            history.append(metrics)
            if self.iteration % self.settings.train.checkpoint_every == 0 or self.iteration == target:
                self.save()
            if on_iteration:
                on_iteration(metrics)
        return history


def _truncate_metrics(path: Path, iterations: int) -> None:
    """Drop metric lines past the checkpoint (written after it, before a crash)."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["iteration"] <= iterations]
    path.write_text("".join(line + "\n" for line in kept))


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / METRICS
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
