"""The full Vision-Zero pipeline as one Prefect flow (the README's main job).

    generate-pairs (per domain, cached) -> base-stage (the starting model, cached)
      -> training: per iteration self-play-rollout -> verify-role-rewards
                   -> grpo-update | rlvr-update -> log-metrics (+ evaluate, game-viewer)
      -> evaluate (newest checkpoint vs the frozen base)
      -> register-model (alias challenger) -> promote-model (gate on registry.metric)

Run: `python -m flows.pipeline [--params params.yaml] [--set key=value ...]`. Deployed
(flows/serve.py, prefect.yaml), its parameters are a form: the settings file, the main knobs
(iterations, domains, seed; empty = params.yaml) and free-form overrides.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.evaluate import evaluate_flow
from flows.options import Domain, with_knobs
from flows.pairs import pairs_flow
from flows.promote import promote_flow
from flows.train import train_flow
from tasks import layout
from tasks.base import prepare_base_model
from tasks.session import settings_of
from visionzero.settings.secrets import redact_text


@flow(name="vision-zero-pipeline")
def pipeline_flow(
    params: str = "params.yaml", overrides: list[str] | None = None, iterations: int | None = None,
    domains: list[Domain] | None = None, seed: int | None = None,
) -> dict:
    """pairs -> Iterative-SPO training -> evaluation -> registry promotion.

    Args:
        params: Settings file (params.yaml), the source of truth the fields below override.
        overrides: Any other setting as section.key=value, e.g. train.lr=3e-5 (as --set).
        iterations: train.iterations, Iterative-SPO iterations (empty: the settings file's).
        domains: pairs.domains, the image-pair domains to train on (empty: the settings file's).
        seed: runtime.seed, the master seed of pairs, seats and sampling (empty: the settings file's).
    """
    overrides = with_knobs(overrides, iterations, domains, seed)  # the sub-flows get them as overrides
    s = settings_of(params, overrides)
    pairs = pairs_flow(params, overrides)
    prepare_base_model(params, overrides, layout.base_metrics(s))  # DVC's base_model stage
    trained = train_flow(params, overrides)
    results = evaluate_flow(params, overrides)
    decision = promote_flow(params, overrides)
    pages = sorted(Path(trained["run_dir"]).glob("iterations/*/games.html"))
    return {
        "pairs": pairs,
        "mlflow_uri": redact_text(s.tracking.uri),
        "mlflow_experiment": s.tracking.experiment,
        "mlflow_run_id": trained["run_id"],
        "checkpoint": trained["checkpoint"],
        "metric": {s.registry.metric: results.get(s.registry.metric)},
        "registered_model": s.registry.model_name,
        "version": decision["version"],
        "aliases": [s.registry.challenger_alias] + ([s.registry.champion_alias] if decision["promoted"] else []),
        "promotion": decision["reason"],
        "game_viewer": str(pages[-1]) if pages else None,
    }


def print_summary(out: dict) -> None:
    print("\nvision-zero pipeline finished")
    print(f"  MLflow run     : {out['mlflow_run_id']} (experiment {out['mlflow_experiment']!r} at {out['mlflow_uri']})")
    print(f"                   browse: mlflow ui --backend-store-uri {out['mlflow_uri']}")
    print(f"  registered     : {out['registered_model']} version {out['version']}, aliases {', '.join(out['aliases'])}")
    print(f"  promotion      : {out['promotion']}")
    print(f"  evaluation     : {out['metric']}")
    print(f"  checkpoint     : {out['checkpoint']}")
    print(f"  game viewer    : {out['game_viewer']}")


if __name__ == "__main__":
    from flows.cli import run

    run(pipeline_flow, __doc__, print_summary)
