"""base-stage: the starting model of the run (the tiny model's base stage, cached on its key)."""

from __future__ import annotations

from collections.abc import Sequence

from prefect import task
from prefect.logging import get_run_logger

from tasks.retry import transient_only
from tasks.session import settings_of


@task(name="base-stage", retries=1, retry_delay_seconds=[5], retry_condition_fn=transient_only)
def prepare_base_model(params: str, overrides: Sequence[str], metrics_path: str | None = None) -> str:
    """The model Iterative-SPO starts from. With base.enabled on the tiny model: the base
    stage's output (a cached folder, the shipped copy, or about 35 minutes of training on 2 CPU threads);
    else model.spec. Writes the base's held-out skills to `metrics_path` when given."""
    from visionzero.base.stage import skills_metrics, starting_spec, write_skills_metrics

    s = settings_of(params, overrides)
    spec = starting_spec(s)
    skills = write_skills_metrics(spec, metrics_path) if metrics_path else skills_metrics(spec)
    if skills:
        get_run_logger().info("base stage %s: %s", spec, ", ".join(f"{k} {v:.3f}" for k, v in skills.items()))
    return spec
