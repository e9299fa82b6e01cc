"""Orchestration overhead: one Iterative-SPO iteration through Prefect tasks + MLflow logging
vs the same library calls made directly, side by side in one process.

  direct     IterativeSPO.play -> score -> update, metrics appended to metrics.jsonl
  pipeline   the train flow's tasks: self-play-rollout -> verify-role-rewards ->
             rlvr/grpo-update -> log-metrics (MLflow, sqlite), inside a Prefect flow
The first iteration of each is a warm-up and is not counted (model load, server start).
Goal: orchestration and tracking cost at most 5% of an iteration at the default size.

    python bench/bench_overhead.py [--iterations 4] [--json bench/results/overhead.json]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import ROOT, report  # noqa: I001


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=4, help="timed iterations (plus one warm-up)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    os.chdir(ROOT)
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="vz-prefect-"))
    from prefect import flow

    from flows.pairs import pairs_flow
    from tasks.layout import pairs_dirs
    from tasks.selfplay import (
        grpo_update,
        rlvr_update,
        self_play_rollout,
        verify_role_rewards,
    )
    from tasks.session import settings_of
    from tasks.tracking import log_metrics, start_run
    from visionzero.train.loop import IterativeSPO, pair_pool

    work = Path(tempfile.mkdtemp(prefix="vz-overhead-"))
    total = args.iterations + 1
    overrides = [f"runtime.workdir={work}", f"tracking.uri=sqlite:///{work}/mlflow.db", f"train.iterations={total}",
                 "eval.every=1000", "tracking.viewer_every=1000"]  # fmt: skip
    params = "params.yaml"
    settings = settings_of(params, overrides)

    @flow(name="overhead-bench")
    def pipeline() -> list[float]:
        run, pairs = str(work / "pipeline"), pairs_dirs(settings)
        start_run(params, overrides, run, "overhead")
        times, stage = [], settings.train.phase.start
        for it in range(1, total + 1):
            t0 = time.perf_counter()
            games = self_play_rollout(params, overrides, run, pairs, iteration=it, stage=stage)
            scores = verify_role_rewards(params, overrides, run, pairs, games, iteration=it, stage=stage)
            update = grpo_update if stage == "clue" else rlvr_update
            metrics = update(params, overrides, run, pairs, games, scores, iteration=it, stage=stage)
            log_metrics(params, overrides, run, metrics, metrics["iteration"])
            stage = metrics["next_stage"]
            times.append(time.perf_counter() - t0)
        return times

    pairs_flow(params, overrides)
    pipe = pipeline()[1:]
    spo = IterativeSPO(settings, work / "direct", pair_pool(pairs_dirs(settings)))
    direct = []
    for _ in range(total):
        t0 = time.perf_counter()
        spo.run_iteration()
        direct.append(time.perf_counter() - t0)
    direct = direct[1:]
    d, p = sum(direct) / len(direct), sum(pipe) / len(pipe)
    report("overhead", {
        "timed iterations": len(direct), "games per iteration": settings.train.games_per_iteration,
        "direct s/iteration": d, "prefect+mlflow s/iteration": p, "overhead": (p - d) / d,
    }, args.json)  # fmt: skip


if __name__ == "__main__":
    main()
