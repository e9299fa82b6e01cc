"""Training flow: the iterative Iterative-SPO DAG, one set of named tasks per iteration.

    for each iteration t:
        self-play-rollout  -> games.jsonl          (current policy plays B games)
        verify-role-rewards -> scores.json         (decision + zero-sum clue rewards, RAE)
        grpo-update | rlvr-update                  (clue stage | decision stage, chosen by
                                                    the Iterative-SPO controller)
        log-metrics                                (MLflow, step t)
        evaluate            every eval.every iterations (the evaluate flow does the last)
        game-viewer         every tracking.viewer_every iterations
Before the first iteration, base-stage makes the starting model (the tiny model's base stage,
cached) and its held-out skills are logged at step 0. Resumes from the run folder's newest
checkpoint (an interrupted `dvc repro` continues).
"""

from __future__ import annotations

from prefect import flow
from prefect.logging import get_run_logger

from tasks import layout
from tasks.base import prepare_base_model
from tasks.evaluate import evaluate_checkpoint
from tasks.reports import game_viewer, training_report
from tasks.selfplay import (
    grpo_update,
    rlvr_update,
    self_play_rollout,
    verify_role_rewards,
)
from tasks.session import current_checkpoint, release, run_state, settings_of
from tasks.tracking import end_run, log_artifacts, log_metrics, start_run


@flow(name="vision-zero-train")
def train_flow(params: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    overrides = list(overrides or [])
    s = settings_of(params, overrides)
    run_dir, pairs = layout.train_dir(s), layout.pairs_dirs(s)
    logger = get_run_logger()
    start = prepare_base_model(params, overrides, layout.base_metrics(s))
    run_id = start_run(params, overrides, run_dir, run_name=f"iterative-spo-{s.model.spec.replace('/', '_')}")
    done, total, stage = run_state(params, overrides, run_dir, pairs)
    if done:
        logger.info("resuming %s at iteration %d of %d", run_dir, done, total)
    else:  # the starting point of every curve: the base stage's held-out skills
        from visionzero.base.stage import skills_metrics

        log_metrics(params, overrides, run_dir, skills_metrics(start), 0)
    while done < total:
        games = self_play_rollout(params, overrides, run_dir, pairs)
        scores = verify_role_rewards(params, overrides, run_dir, pairs, games)
        played = stage
        update = grpo_update if played == "clue" else rlvr_update
        metrics = update(params, overrides, run_dir, pairs, games, scores)
        done, stage = metrics["iteration"], metrics["next_stage"]
        log_metrics(params, overrides, run_dir, metrics, done)
        if done % s.eval.every == 0 and done < total:  # the final one is the evaluate flow's
            checkpoint = current_checkpoint(params, overrides, run_dir, pairs)  # this exact policy
            results = evaluate_checkpoint(params, overrides, str(checkpoint / "model"), f"{run_dir}/eval", done, run_dir)
            log_metrics(params, overrides, run_dir, {f"eval/{k}": v for k, v in results.items()}, done)
        if done % s.tracking.viewer_every == 0 or done == total:
            page = game_viewer(games, title=f"iteration {done} ({played} stage)")
            log_artifacts(params, overrides, run_dir, [page], f"games/iter-{done:06d}")
    reports = training_report(run_dir)
    log_artifacts(params, overrides, run_dir, reports + [f"{p}/contact_sheet.png" for p in pairs], "reports")
    run_id = end_run(params, overrides, run_dir) or run_id  # created later if the server was down at the start
    checkpoint = current_checkpoint(params, overrides, run_dir, pairs)
    release(run_dir)
    return {"run_dir": run_dir, "run_id": run_id, "checkpoint": str(checkpoint / "model")}


if __name__ == "__main__":
    from flows.cli import run

    run(train_flow, __doc__)
