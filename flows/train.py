"""Training flow: the iterative Iterative-SPO DAG, one set of named tasks per iteration.

    for each iteration t:
        self-play-rollout  -> games.jsonl          (current policy plays B games)
        verify-role-rewards -> scores.json         (decision + zero-sum clue rewards, RAE)
        grpo-update | rlvr-update                  (clue stage | decision stage, chosen by
                                                    the Iterative-SPO controller)
        log-metrics                                (MLflow, step t)
        evaluate            every eval.every iterations (the evaluate flow does the last)
        game-viewer         every tracking.viewer_every iterations
Task runs are named by iteration and stage (`self-play-rollout-it3-decision`); the one-off tasks
(base stage, MLflow run, evaluation, reports) are tagged `domain:<domain>`. The per-iteration tasks carry
no tags: in Prefect 3.8 a tagged task run first asks the API for concurrency slots of its
tags, and once the client's 5-second cache of "no limits" has lapsed that request took ~2 s on
the local server, a quarter of a CPU iteration (docs/learning.md section 12). Before the first iteration, base-stage makes the
starting model (the tiny model's base stage, cached) and its held-out skills are logged at
step 0. Resumes from the run folder's newest checkpoint (an interrupted `dvc repro` continues).
"""

from __future__ import annotations

from prefect import flow, tags
from prefect.logging import get_run_logger

from flows.options import Domain, with_knobs
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
def train_flow(
    params: str = "params.yaml", overrides: list[str] | None = None, iterations: int | None = None,
    domains: list[Domain] | None = None, seed: int | None = None,
) -> dict:
    """Iterative-SPO training of the run folder (resumed if it has a checkpoint).

    Args:
        params: Settings file (params.yaml), the source of truth the fields below override.
        overrides: Any other setting as section.key=value, e.g. train.lr=3e-5 (as --set).
        iterations: train.iterations, Iterative-SPO iterations (empty: the settings file's).
        domains: pairs.domains, the image-pair domains to train on (empty: the settings file's).
        seed: runtime.seed, the master seed of pairs, seats and sampling (empty: the settings file's).
    """
    overrides = with_knobs(overrides, iterations, domains, seed)
    s = settings_of(params, overrides)
    run_dir, pairs, domain = layout.train_dir(s), layout.pairs_dirs(s), layout.domain_tags(s)
    logger = get_run_logger()
    with tags(*domain):
        start = prepare_base_model(params, overrides)  # its skills file is the base stage's (pipeline, DVC)
        run_id = start_run(params, overrides, run_dir, run_name=f"iterative-spo-{s.model.spec.replace('/', '_')}")
    done, total, stage = run_state(params, overrides, run_dir, pairs)
    if done:
        logger.info("resuming %s at iteration %d of %d", run_dir, done, total)
    else:  # the starting point of every curve: the base stage's held-out skills
        from visionzero.base.stage import skills_metrics

        log_metrics(params, overrides, run_dir, skills_metrics(start), 0)
    while done < total:
        played, it = stage, done + 1  # untagged (module docstring): the names carry iteration and stage
        games = self_play_rollout(params, overrides, run_dir, pairs, iteration=it, stage=played)
        scores = verify_role_rewards(params, overrides, run_dir, pairs, games, iteration=it, stage=played)
        update = grpo_update if played == "clue" else rlvr_update
        metrics = update(params, overrides, run_dir, pairs, games, scores, iteration=it, stage=played)
        done, stage = metrics["iteration"], metrics["next_stage"]
        log_metrics(params, overrides, run_dir, metrics, done)
        if done % s.eval.every == 0 and done < total:  # the final one is the evaluate flow's
            checkpoint = current_checkpoint(params, overrides, run_dir, pairs)  # this exact policy
            with tags(*domain):
                results = evaluate_checkpoint(params, overrides, str(checkpoint / "model"), f"{run_dir}/eval", done, run_dir)
            log_metrics(params, overrides, run_dir, {f"eval/{k}": v for k, v in results.items()}, done)
        if done % s.tracking.viewer_every == 0 or done == total:
            page = game_viewer(games, title=f"iteration {done} ({played} stage)", iteration=done)
            log_artifacts(params, overrides, run_dir, [page], f"games/iter-{done:06d}")
    with tags(*domain):
        reports = training_report(run_dir)
    log_artifacts(params, overrides, run_dir, reports + [f"{p}/contact_sheet.png" for p in pairs], "reports")
    run_id = end_run(params, overrides, run_dir) or run_id  # created later if the server was down at the start
    checkpoint = current_checkpoint(params, overrides, run_dir, pairs)
    release(run_dir)
    return {"run_dir": run_dir, "run_id": run_id, "checkpoint": str(checkpoint / "model")}


if __name__ == "__main__":
    from flows.cli import run

    run(train_flow, __doc__)
