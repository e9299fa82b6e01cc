"""Model registry: register a checkpoint as an MLflow model, alias it `challenger`, gate `champion`.

Each version is a real, immutable MLflow model (an MLflow 3 LoggedModel of the training
run, `python_function` flavour from `pyfunc_model.py`, with a signature, an input example
and pinned requirements): `mlflow.pyfunc.load_model("models:/vision-zero@champion")` answers
(image, prompt) -> text in any process, and `mlflow models serve` serves it. Its weights are,
by `registry.weights`:
- `upload` (default): copied with the model into the run's artifact store (through the
  tracking server when it proxies artifacts). A 7B checkpoint is ~16 GB of upload.
- `reference`: copied once into `registry.store/<sha256>/` (read-only; a shared disk for
  multi-GB weights), and the model holds that path and digest, checked at load.
Either way no version points at the training's checkpoint folder, which later runs
overwrite, and two versions never share storage that changes.

A version is named by the sha256 of its weights (tag `content.sha256`): registering the
same checkpoint again returns the existing version and adds none. Its tags carry the
evaluation metrics (`metric.*`) and what they were measured on (`eval.set`,
`eval.protocol`, `eval.opponent`, see `visionzero/eval/identity.py`).

The promotion gate moves `champion` to the challenger only if both were evaluated on the
same set, by the same rules, against the same opponent, and the challenger's metric beats
the champion's by more than the margin (higher is better); with `registry.beat_opponent`
it must also have won its match against the frozen opponent (the win rate's 95% interval
above even), so a first champion is promoted on merit, not for being first. Otherwise it
refuses in one line. The decision and its reason are returned and tagged on the challenger's version.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from visionzero.models.digest import tree_manifest
from visionzero.settings import Settings
from visionzero.settings.schema import RegistrySettings
from visionzero.tracking.connection import export_credentials, resolve_store_uri

METRIC_TAG = "metric."
DIGEST_TAG = "content.sha256"
EVAL_KEYS = ("eval_set", "protocol", "opponent")  # identity keys the gate compares
EVAL_TAG = {"eval_set": "eval.set", "protocol": "eval.protocol", "opponent": "eval.opponent"}
MATCH_LOW = "match/ci_low"  # lower end of the win rate's 95% interval against the frozen opponent
PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
ARTIFACT_NAME = "policy"
# What the model's code imports (pinned to this environment's versions).
REQUIREMENTS = ("mlflow", "torch", "transformers", "tokenizers", "safetensors", "pillow", "numpy", "pandas",
                "pydantic", "pyyaml")  # fmt: skip


class RegistryError(RuntimeError):
    """Registration refused; the message says why in one line."""


@dataclass
class Registration:
    version: str
    created: bool  # False: this checkpoint was already registered (same weights digest)
    digest: str
    model_id: str | None


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
    comparable: bool = True
    evaluation: dict[str, str] = field(default_factory=dict)  # the challenger's eval.* tags

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- registering
def find_version(client, name: str, digest: str):
    """The version of `name` whose weights have `digest`, or None."""
    from mlflow.exceptions import MlflowException

    try:
        found = client.search_model_versions(f"name = '{name}' and tags.`{DIGEST_TAG}` = '{digest}'")
    except MlflowException:
        return None  # no such registered model yet
    return min(found, key=lambda v: int(v.version)) if found else None


def register_checkpoint(
    client, settings: Settings, checkpoint_dir: str | Path, run_id: str | None,
    metrics: dict[str, float], identity: dict[str, str] | None = None, tags: dict[str, str] | None = None,
    datasets: list[dict[str, str]] | None = None,
) -> Registration:
    """Log `checkpoint_dir` (a saved model folder) as an MLflow model of run `run_id` and
    register it as a new version aliased challenger, unless its weights are registered already.

    `identity` (from `eval_identity`) says what `metrics` were measured on; when it names the
    evaluated model, that must be this checkpoint (stale results are refused). `datasets`
    ({name, path, digest, context}) are logged as the run's input datasets.
    """
    reg = settings.registry
    folder = Path(checkpoint_dir).resolve()
    if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
        raise RegistryError(f"{folder} is not a saved model folder (no config.json)")
    if (folder / "adapter_config.json").is_file():
        raise RegistryError(f"{folder} holds LoRA adapters over another folder's weights; merge them "
                            "(PeftModel.merge_and_unload + save_pretrained) and register the merged model")  # fmt: skip
    digest, files = tree_manifest(folder)
    evaluated = (identity or {}).get("model")
    if evaluated and evaluated != digest:
        raise RegistryError(f"the evaluation results are of other weights ({evaluated[:19]}...) than {folder} "
                            f"({digest[:19]}...); evaluate this checkpoint first")  # fmt: skip
    existing = find_version(client, reg.model_name, digest)
    if existing is not None:
        return Registration(str(existing.version), False, digest, getattr(existing, "model_id", None))

    model_id = log_policy_model(client, settings, folder, digest, files, run_id)
    if run_id and datasets:
        log_datasets(client, run_id, datasets)
    _ensure_registered_model(client, reg.model_name)  # only now: a failed upload leaves no empty model
    version_tags = {f"{METRIC_TAG}{k}": repr(float(v)) for k, v in metrics.items() if _is_number(v)}
    version_tags.update({EVAL_TAG[k]: identity[k] for k in EVAL_KEYS if identity and identity.get(k)})
    version_tags.update({DIGEST_TAG: digest, "weights": reg.weights, "checkpoint": str(folder)})
    version_tags.update(tags or {})
    with _global_tracking_uri(settings.tracking.uri):  # a local registry fetches `models:/` through it
        version = client.create_model_version(
            reg.model_name, source=f"models:/{model_id}", run_id=run_id, tags=version_tags, model_id=model_id
        )
    client.set_registered_model_alias(reg.model_name, reg.challenger_alias, version.version)
    return Registration(str(version.version), True, digest, model_id)


def _ensure_registered_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Vision-Zero policies (Iterative-SPO): (image, prompt) -> text")


def _experiment_id(client, settings: Settings, run_id: str | None) -> str:
    if run_id:
        return client.get_run(run_id).info.experiment_id
    exp = client.get_experiment_by_name(settings.tracking.experiment)
    return exp.experiment_id if exp else client.create_experiment(settings.tracking.experiment)


def _step(folder: Path) -> int:
    """The training iteration of `<run>/checkpoints/iter-000004/model` (0 if not a checkpoint)."""
    try:
        return int(folder.parent.name.split("-", 1)[1])
    except (IndexError, ValueError):
        return 0


def log_policy_model(client, settings: Settings, folder: Path, digest: str, files, run_id: str | None) -> str:
    """Log the pyfunc model of `folder` as a LoggedModel (an output of `run_id`); return its id."""
    import mlflow
    from mlflow.entities import LoggedModelOutput

    logged = client.create_logged_model(
        experiment_id=_experiment_id(client, settings, run_id), name=ARTIFACT_NAME, source_run_id=run_id,
        tags={DIGEST_TAG: digest}, model_type="vision-language policy",
    )  # fmt: skip
    config = {
        "attn_implementation": settings.model.attn_implementation, "min_pixels": settings.model.min_pixels,
        "max_pixels": settings.model.max_pixels, "device": "auto", "dtype": settings.runtime.dtype,
        "threads": settings.runtime.threads, "micro_batch_size": settings.rollout.micro_batch_size,
        "max_new_tokens": settings.eval.max_new_tokens,
    }  # fmt: skip
    try:
        artifacts = None
        if settings.registry.weights == "upload":
            artifacts = {"weights": str(folder)}
        else:
            config.update(weights_dir=str(store_weights(settings, folder, digest, files)), weights_digest=digest)
        with tempfile.TemporaryDirectory(prefix="vz-model-code-") as tmp, _global_tracking_uri(settings.tracking.uri):
            mlflow.pyfunc.log_model(
                name=ARTIFACT_NAME, model_id=logged.model_id, python_model=str(PYFUNC_FILE), artifacts=artifacts,
                code_paths=[_stage_code(Path(tmp))], model_config=config, signature=signature(settings),
                input_example=input_example(), pip_requirements=requirements(),
            )  # fmt: skip
        if tree_manifest(folder)[0] != digest:  # the upload must be the weights the digest names
            raise RegistryError(f"{folder} changed while it was logged; register again")
    except BaseException:
        from mlflow.entities import LoggedModelStatus

        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    if run_id:
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=_step(folder))])
    return logged.model_id


@contextmanager
def _global_tracking_uri(uri: str):
    """log_model is fluent (it logs to the global tracking URI): point that at `uri` for the
    call only, so later clients of this process (their registry URI follows it) are unaffected.
    Resolved as the clients resolve it: a relative store under `dvc exp run --temp` is the
    project's, not one in the temporary copy (where the logged model would not be found)."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    saved = os.environ.get("MLFLOW_TRACKING_URI")  # restoring "unset" would also drop the user's variable
    try:
        with _use_tracking_uri(export_credentials(resolve_store_uri(uri))):
            yield
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def log_datasets(client, run_id: str, datasets: list[dict[str, str]]) -> None:
    """Input datasets of the run, by reference: a local folder, its digest and how it was used
    (`training`, `evaluation`); MLflow shows them with the run that produced the model."""
    from mlflow.data.dataset_source_registry import get_registered_sources, resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    # MLflow registers the local-folder source twice; name one so it does not warn about it
    local = [src for src in get_registered_sources() if src.__name__ == "LocalArtifactDatasetSource"][:1] or None
    inputs = [
        DatasetInput(MetaDataset(resolve_dataset_source(str(Path(d["path"]).resolve()), local), name=d["name"],
                                 digest=d["digest"])._to_mlflow_entity(),
                     [InputTag(MLFLOW_DATASET_CONTEXT, d["context"])])
        for d in datasets
    ]  # fmt: skip
    client.log_inputs(run_id, datasets=inputs)


def _stage_code(tmp: Path) -> str:
    """A copy of the visionzero package for the model's code/ (its assets are not needed to load)."""
    import visionzero

    target = tmp / "visionzero"
    shutil.copytree(Path(visionzero.__file__).parent, target,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "assets"))  # fmt: skip
    return str(target)


def requirements() -> list[str]:
    out = []
    for dist in REQUIREMENTS:
        try:
            out.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(dist)
    return out


def signature(settings: Settings):
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("binary", "image"), ColSpec("string", "prompt")]),
        outputs=Schema([ColSpec("string", "text")]),
        params=ParamSchema([
            ParamSpec("max_new_tokens", "long", settings.eval.max_new_tokens),
            ParamSpec("temperature", "double", 0.0),
            ParamSpec("seed", "long", 0),
        ]),
    )  # fmt: skip


def input_example():
    """One (image, prompt) row: a small PNG of a red square on grey."""
    import io

    import pandas as pd
    from PIL import Image

    img = Image.new("RGB", (56, 56), (128, 128, 128))
    img.paste((200, 30, 30), (14, 14, 42, 42))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return pd.DataFrame({"image": [buf.getvalue()], "prompt": ["What colour is the square? Answer in \\boxed{}."]})


def store_root(settings: Settings) -> Path:
    return Path(settings.registry.store or Path(settings.runtime.workdir) / "model-store").resolve()


def store_weights(settings: Settings, folder: Path, digest: str, files) -> Path:
    """Copy `folder` to `<store>/<hex digest>/` once (read-only files + MANIFEST.json); reuse it after."""
    target = store_root(settings) / digest.split(":", 1)[1]
    manifest = target / "MANIFEST.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("digest") == digest:
        return target
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for rel, _sha, _size in files:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / rel, tmp / rel)
    if tree_manifest(tmp)[0] != digest:  # the checkpoint changed under us: never store a mislabelled copy
        shutil.rmtree(tmp, ignore_errors=True)
        raise RegistryError(f"{folder} changed while it was copied to the model store; register again")
    (tmp / "MANIFEST.json").write_text(json.dumps({"digest": digest, "files": [list(f) for f in files]}, indent=1))
    for path in tmp.rglob("*"):
        if path.is_file():
            os.chmod(path, 0o444)  # content-addressed: never written again
    if target.exists():  # a half-written older copy (no matching manifest)
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


# --------------------------------------------------------------------------- the gate
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def _metric(tags: dict[str, str], metric: str) -> float | None:
    raw = tags.get(f"{METRIC_TAG}{metric}")
    return float(raw) if raw is not None else None


def _evaluation(tags: dict[str, str]) -> dict[str, str]:
    return {k: tags[EVAL_TAG[k]] for k in EVAL_KEYS if EVAL_TAG[k] in tags}


def _incomparable(challenger: dict[str, str], champion: dict[str, str]) -> str | None:
    """Why two evaluations cannot be compared, or None when they can."""
    missing = [k for k in EVAL_KEYS if k not in challenger or k not in champion]
    if missing:
        return f"no record of the evaluation's {', '.join(missing)} on one of them"
    differ = [f"{k} {challenger[k][:19]} vs {champion[k][:19]}" for k in EVAL_KEYS if challenger[k] != champion[k]]
    return "; ".join(differ) or None


def promotion_gate(client, settings: RegistrySettings, challenger_version: str) -> PromotionDecision:
    """Move the champion alias to the challenger if it is better by more than the margin, on
    the same evaluation (set, protocol, opponent) as the champion's, and (beat_opponent) its
    match against the frozen opponent was won: match/ci_low > 0.5. An evaluation without a
    match has no interval, and only the comparison with the champion applies."""
    from mlflow.exceptions import MlflowException

    name, metric = settings.model_name, settings.metric
    tags = dict(client.get_model_version(name, challenger_version).tags)
    value, evaluation = _metric(tags, metric), _evaluation(tags)
    try:
        champion = client.get_model_version_by_alias(name, settings.champion_alias)
        champion_version, champion_tags = str(champion.version), dict(champion.tags)
    except MlflowException:
        champion_version, champion_tags = None, {}
    champion_value = _metric(champion_tags, metric) if champion_version else None
    why_not = _incomparable(evaluation, _evaluation(champion_tags)) if champion_version else None
    comparable = why_not is None
    match_low = _metric(tags, MATCH_LOW)
    refused_as = "rejected"

    if value is None:
        promoted, reason = False, f"challenger has no {metric!r} metric"
    elif champion_version == challenger_version:
        promoted, reason = False, f"version {challenger_version} is already {settings.champion_alias}"
    elif settings.beat_opponent and match_low is not None and match_low <= 0.5:
        promoted = False
        reason = (f"not shown to beat the frozen opponent: {MATCH_LOW} {match_low:.4f} <= 0.5 (the win rate's "
                  f"95% interval includes even)")  # fmt: skip
    elif champion_version is None:
        won = f", won its match ({MATCH_LOW} {match_low:.4f} > 0.5)" if settings.beat_opponent and match_low is not None else ""
        promoted, reason = True, f"no {settings.champion_alias} yet; {metric}={value:.4f}{won}"
    elif not comparable:
        promoted, refused_as = False, "not-comparable"
        reason = (f"not compared: v{challenger_version} and {settings.champion_alias} v{champion_version} were evaluated "
                  f"differently ({why_not}); evaluate both the same way")  # fmt: skip
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
    outcome = "promoted" if promoted else refused_as
    client.set_model_version_tag(name, challenger_version, "promotion", outcome)
    client.set_model_version_tag(name, challenger_version, "promotion.reason", reason)
    if champion_version and champion_version != challenger_version:
        client.set_model_version_tag(name, challenger_version, "promotion.compared_with", champion_version)
    return PromotionDecision(name, challenger_version, promoted, reason, metric, value, champion_version,
                             champion_value, settings.margin, comparable, evaluation)  # fmt: skip
