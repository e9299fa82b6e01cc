"""The registry against a real `mlflow server` on loopback (its own store, proxied artifacts):
each version is a real MLflow model that loads in a fresh process, versions never share
storage, the same weights register once, and the gate compares only like evaluations."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import copy_model
from visionzero.settings import load_settings
from visionzero.tracking.registry import promotion_gate, register_checkpoint

pytestmark = pytest.mark.pipeline

FRESH_LOAD = """
import io, json, sys
assert not [m for m in sys.modules if m.startswith("visionzero")]
import mlflow, pandas as pd
from PIL import Image
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(sys.argv[2])
buf = io.BytesIO()
Image.new("RGB", (112, 112), (200, 30, 30)).save(buf, format="PNG")
frame = pd.DataFrame({"image": [buf.getvalue(), buf.getvalue()], "prompt": ["What colour is it?", "Describe it."]})
out = model.predict(frame, params={"max_new_tokens": 6})
print(json.dumps({"text": list(out["text"]), "code": sys.modules["visionzero"].__file__}))
"""


def _settings(uri: str, tmp_path: Path, model_cache: Path, name: str, *extra: str):
    return load_settings(None, [
        f"tracking.uri={uri}", f"registry.model_name={name}", f"model.cache_dir={model_cache}",
        "runtime.device=cpu", "runtime.threads=1", f"runtime.workdir={tmp_path}/runs", *extra,
    ])  # fmt: skip


def _training_run(client, settings) -> str:
    exp = client.get_experiment_by_name(settings.tracking.experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(settings.tracking.experiment)
    return client.create_run(exp_id, run_name="train").info.run_id


def _tree_hash(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def _download(uri: str, dst: Path) -> Path:
    import mlflow.artifacts

    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))


def _fresh_predict(tracking_uri: str, model_uri: str, cwd: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", FRESH_LOAD, tracking_uri, model_uri], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def fluent(mlflow_server):
    """MLflow's fluent calls (load_model, download_artifacts, get_model_info) read the global URI."""
    import mlflow

    mlflow.set_tracking_uri(mlflow_server)
    yield
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def tiny_dir(tiny_settings) -> Path:
    from visionzero.models.loading import resolve_spec

    return Path(resolve_spec(tiny_settings.model))


def test_a_version_is_a_logged_mlflow_model_that_loads_in_a_fresh_process(mlflow_server, fluent, tmp_path, model_cache, tiny_dir):
    import mlflow
    from mlflow import MlflowClient

    s = _settings(mlflow_server, tmp_path, model_cache, "vision-zero")
    client = MlflowClient(mlflow_server)
    run_id = _training_run(client, s)
    checkpoint = copy_model(tiny_dir, tmp_path / "runs/train/checkpoints/iter-000004/model")
    identity = {"eval_set": "e1", "protocol": "p1", "opponent": "o1"}
    datasets = [{"name": "pairs-clevr", "path": str(tmp_path), "digest": "abc123", "context": "training"}]
    reg = register_checkpoint(client, s, checkpoint, run_id, {"win_rate": 0.5}, identity, datasets=datasets)
    assert reg.created and reg.model_id
    assert promotion_gate(client, s.registry, reg.version).promoted

    version = client.get_model_version("vision-zero", reg.version)
    assert version.source == f"models:/{reg.model_id}" and version.run_id == run_id
    assert version.tags["eval.set"] == "e1" and version.tags["eval.opponent"] == "o1"
    assert version.tags["content.sha256"] == reg.digest
    logged = client.get_logged_model(reg.model_id)
    assert logged.source_run_id == run_id and str(logged.status).endswith("READY")
    run = client.get_run(run_id)
    assert reg.model_id in [o.model_id for o in run.outputs.model_outputs]
    [used] = run.inputs.dataset_inputs
    assert (used.dataset.name, used.dataset.digest, used.tags[0].value) == ("pairs-clevr", "abc123", "training")

    info = mlflow.models.get_model_info("models:/vision-zero@champion")
    assert "python_function" in info.flavors
    assert [c.name for c in info.signature.inputs.inputs] == ["image", "prompt"]
    assert info.saved_input_example_info is not None
    files = _download("models:/vision-zero@champion", tmp_path / "dl")
    requirements = (files / "requirements.txt").read_text()
    assert "torch==" in requirements and "transformers==" in requirements and "torchvision" not in requirements
    assert (files / "artifacts/model/model.safetensors").is_file()  # the weights travel with the model
    assert (files / "code/visionzero/models/processor.py").is_file()

    out = _fresh_predict(mlflow_server, "models:/vision-zero@champion", tmp_path)
    assert len(out["text"]) == 2 and all(isinstance(t, str) for t in out["text"])
    assert "/code/visionzero/" in out["code"]  # the model's own code, not the checkout's


def test_versions_never_share_storage_and_the_same_weights_register_once(mlflow_server, fluent, tmp_path, model_cache, tiny_dir):
    from mlflow import MlflowClient

    name = "vz-immutable"
    s = _settings(mlflow_server, tmp_path, model_cache, name)
    client = MlflowClient(mlflow_server)
    checkpoint = copy_model(tiny_dir, tmp_path / "runs/train/checkpoints/iter-000002/model")
    v1 = register_checkpoint(client, s, checkpoint, _training_run(client, s), {"win_rate": 0.4})
    before = _tree_hash(_download(f"models:/{name}/{v1.version}", tmp_path / "v1-before"))

    # a second training writes a different checkpoint into the very same folder
    copy_model(tiny_dir, checkpoint, nudge=0.01)
    v2 = register_checkpoint(client, s, checkpoint, _training_run(client, s), {"win_rate": 0.6})
    assert v2.created and v2.version != v1.version and v2.digest != v1.digest
    after = _tree_hash(_download(f"models:/{name}/{v1.version}", tmp_path / "v1-after"))
    assert after == before  # v1's files are untouched
    second = _tree_hash(_download(f"models:/{name}/{v2.version}", tmp_path / "v2"))
    weights = "artifacts/model/model.safetensors"
    assert second[weights] != before[weights]

    # registering the same weights again (a rerun that trained nothing) adds no version
    again = register_checkpoint(client, s, checkpoint, None, {"win_rate": 0.6})
    assert not again.created and again.version == v2.version
    assert len(client.search_model_versions(f"name = '{name}'")) == 2
    assert str(client.get_model_version_by_alias(name, "challenger").version) == v2.version


def test_reference_mode_stores_weights_by_digest(mlflow_server, fluent, tmp_path, model_cache, tiny_dir):
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient
    from PIL import Image

    name = "vz-reference"
    s = _settings(mlflow_server, tmp_path, model_cache, name, "registry.weights=reference", f"registry.store={tmp_path}/store")
    client = MlflowClient(mlflow_server)
    checkpoint = copy_model(tiny_dir, tmp_path / "ckpt/model")
    reg = register_checkpoint(client, s, checkpoint, None, {"win_rate": 0.5})
    stored = tmp_path / "store" / reg.digest.split(":")[1]
    assert (stored / "model.safetensors").stat().st_mode & 0o222 == 0  # read-only: content-addressed
    files = _download(f"models:/{name}/{reg.version}", tmp_path / "dl")
    assert not list(files.rglob("*.safetensors"))  # only the reference was uploaded

    copy_model(tiny_dir, checkpoint, nudge=0.5)  # the checkpoint folder moves on; the version does not
    model = mlflow.pyfunc.load_model(f"models:/{name}/{reg.version}")
    buf = io.BytesIO()
    Image.new("RGB", (112, 112), (0, 0, 200)).save(buf, format="PNG")
    out = model.predict(pd.DataFrame({"image": [buf.getvalue()], "prompt": ["Colour?"]}), params={"max_new_tokens": 4})
    assert len(out["text"]) == 1

    os.chmod(stored / "model.safetensors", 0o644)
    with open(stored / "model.safetensors", "ab") as fh:
        fh.write(b"\0")  # tampered storage is refused at load, in one line
    with pytest.raises(Exception, match="changed since registration"):
        mlflow.pyfunc.load_model(f"models:/{name}/{reg.version}")


@pytest.mark.slow
def test_mlflow_models_serve_answers_invocations(mlflow_server, tmp_path, model_cache, tiny_dir):
    """`mlflow models serve --env-manager local` on loopback serves a registered version."""
    import urllib.request

    from mlflow import MlflowClient

    from tests.helpers import free_port, wait_for_http

    name = "vz-serve"
    s = _settings(mlflow_server, tmp_path, model_cache, name)
    reg = register_checkpoint(MlflowClient(mlflow_server), s, copy_model(tiny_dir, tmp_path / "m"), None, {})
    port = free_port()
    # MLflow starts `uvicorn` by name: the environment's bin/ must be on PATH (an activated venv)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "PATH": path}
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}/{reg.version}", "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", proc, tmp_path / "serve.log")
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (112, 112), (0, 200, 0)).save(buf, format="PNG")
        body = {"dataframe_split": {"columns": ["image", "prompt"], "data": [[base64.b64encode(buf.getvalue()).decode(), "Colour?"]]},
                "params": {"max_new_tokens": 4}}  # fmt: skip
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=120) as r:
            answer = json.loads(r.read())
        assert len(answer["predictions"]) == 1 and isinstance(answer["predictions"][0]["text"], str)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.slow
def test_gate_on_real_evaluations_promotes_rejects_and_refuses_unlike_ones(mlflow_server, tmp_path, model_cache, tiny_dir):
    """Real models that really differ (the shipped micro base writes the vote format, the random
    tiny model never does), each evaluated on generated held-out pairs before it is registered."""
    from mlflow import MlflowClient

    import visionzero
    from visionzero.eval.identity import eval_identity
    from visionzero.eval.runner import evaluate
    from visionzero.pairs.generate import generate_pairs
    from visionzero.tracking.registry import RegistryError

    name, metric = "vz-gate", "game/vote_format_rate"
    random_tiny = copy_model(tiny_dir, tmp_path / "opponent")
    # 2-game matches win nothing (the merit check has its own test in test_tracking.py): this
    # test is the comparison of two versions on a real server
    small = ["profile=micro", "eval.games=2", "eval.vqa_per_type=1", "eval.max_new_tokens=12",
             f"registry.metric={metric}", "registry.margin=0.1", "registry.beat_opponent=false"]  # fmt: skip
    s = _settings(mlflow_server, tmp_path, model_cache, name, *small, f"eval.opponent={random_tiny}")
    generate_pairs(s.pairs, "clevr", 6, tmp_path / "pairs", n_eval=4, workers=1)
    client = MlflowClient(mlflow_server)
    micro_base = Path(visionzero.__file__).parent / "assets/micro-base"

    def evaluate_and_register(folder: Path, settings=s):
        report = evaluate(settings, [str(tmp_path / "pairs")], model=str(folder))
        identity = eval_identity(report, settings)
        reg = register_checkpoint(client, settings, folder, None, report.metrics, identity)
        return reg, report.metrics[metric], promotion_gate(client, settings.registry, reg.version)

    _, weak, first = evaluate_and_register(copy_model(tiny_dir, tmp_path / "a/model", nudge=0.001))
    assert first.promoted  # no champion yet
    strong_model = copy_model(micro_base, tmp_path / "b/model")
    v2, strong, second = evaluate_and_register(strong_model)
    assert (weak, strong) == (0.0, 1.0)
    assert second.promoted and second.champion_version == first.challenger_version
    _, _, third = evaluate_and_register(copy_model(tiny_dir, tmp_path / "c/model", nudge=0.002))
    assert not third.promoted and third.comparable and "<=" in third.reason
    assert str(client.get_model_version_by_alias(name, "champion").version) == v2.version

    # as good as the champion, but evaluated against another opponent: refused, in one line
    other = _settings(mlflow_server, tmp_path, model_cache, name, *small, f"eval.opponent={micro_base}")
    _, _, fourth = evaluate_and_register(copy_model(micro_base, tmp_path / "d/model", nudge=1e-6), other)
    assert not fourth.promoted and not fourth.comparable
    assert fourth.reason.startswith("not compared") and "opponent" in fourth.reason and "\n" not in fourth.reason
    assert client.get_model_version(name, fourth.challenger_version).tags["promotion"] == "not-comparable"
    assert str(client.get_model_version_by_alias(name, "champion").version) == v2.version

    # results of one model are never registered for another
    report = evaluate(s, [str(tmp_path / "pairs")], model=str(strong_model))
    with pytest.raises(RegistryError, match="evaluate this checkpoint first"):
        register_checkpoint(client, s, copy_model(tiny_dir, tmp_path / "e/model", nudge=0.003), None,
                            report.metrics, eval_identity(report, s))  # fmt: skip
