"""Model registry: register a checkpoint directory, alias it `challenger`, gate `champion`.

The checkpoint is NOT uploaded through MLflow's artifact store (a 7B checkpoint is ~16 GB
and HTTP artifact uploads of that size are slow or fail): the registered version's source
is the DVC-tracked checkpoint directory itself, and its tags carry the evaluation metrics
and the data/code provenance. `models:/<name>@champion` then resolves to that directory.

The promotion gate moves `champion` to the challenger only if the challenger's metric
beats the current champion's by more than the margin (higher is better); the decision and
its reason are returned, tagged on the version, and written as JSON by the caller.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from visionzero.settings.schema import RegistrySettings

METRIC_TAG = "metric."


@dataclass
class PromotionDecision:
    model_name: str
    challenger_version: str
    promoted: bool
    reason: str
    metric: str
    challenger_value: float | None
    champion_version: str | None
    champion_value: float | None
    margin: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def register_checkpoint(
    client, settings: RegistrySettings, checkpoint_dir: str | Path, run_id: str | None,
    metrics: dict[str, float], tags: dict[str, str] | None = None,
) -> str:
    """Create a model version whose source is the checkpoint directory; alias it challenger."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(settings.model_name)
    except MlflowException:
        client.create_registered_model(settings.model_name, description="Vision-Zero policies (Iterative-SPO)")
    version_tags = {f"{METRIC_TAG}{k}": repr(float(v)) for k, v in metrics.items() if _is_number(v)}
    version_tags.update(tags or {})
    version = client.create_model_version(
        settings.model_name, source=str(Path(checkpoint_dir).resolve()), run_id=run_id, tags=version_tags
    )
    client.set_registered_model_alias(settings.model_name, settings.challenger_alias, version.version)
    return str(version.version)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def _metric_of(client, name: str, version: str, metric: str) -> float | None:
    tags = client.get_model_version(name, version).tags
    raw = tags.get(f"{METRIC_TAG}{metric}")
    return float(raw) if raw is not None else None


def promotion_gate(client, settings: RegistrySettings, challenger_version: str) -> PromotionDecision:
    """Move the champion alias to the challenger if it is better by more than the margin."""
    from mlflow.exceptions import MlflowException

    name, metric = settings.model_name, settings.metric
    value = _metric_of(client, name, challenger_version, metric)
    try:
        champion = client.get_model_version_by_alias(name, settings.champion_alias)
        champion_version = str(champion.version)
    except MlflowException:
        champion_version = None
    champion_value = _metric_of(client, name, champion_version, metric) if champion_version else None

    if value is None:
        promoted, reason = False, f"challenger has no {metric!r} metric"
    elif champion_version is None:
        promoted, reason = True, f"no {settings.champion_alias} yet; {metric}={value:.4f}"
    elif champion_version == challenger_version:
        promoted, reason = False, f"version {challenger_version} is already {settings.champion_alias}"
    elif champion_value is None:
        promoted, reason = True, f"{settings.champion_alias} v{champion_version} has no {metric!r}; challenger {value:.4f}"
    elif value > champion_value + settings.margin:
        promoted = True
        reason = f"{metric} {value:.4f} > champion v{champion_version} {champion_value:.4f} + margin {settings.margin}"
    else:
        promoted = False
        reason = f"{metric} {value:.4f} <= champion v{champion_version} {champion_value:.4f} + margin {settings.margin}"

    if promoted:
        client.set_registered_model_alias(name, settings.champion_alias, challenger_version)
    client.set_model_version_tag(name, challenger_version, "promotion", "promoted" if promoted else "rejected")
    client.set_model_version_tag(name, challenger_version, "promotion.reason", reason)
    return PromotionDecision(
        name, challenger_version, promoted, reason, metric, value, champion_version, champion_value, settings.margin
    )
