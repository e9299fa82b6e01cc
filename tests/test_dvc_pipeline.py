"""`dvc repro` in a temporary git repository: the whole pipeline, a no-op second repro, what each
stage declares (outs, params, code deps), the offline plots page, an experiment."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]

TINY = {
    "profile": "none",  # this file's values, not the micro profile's budget
    "runtime": {"threads": 1},
    "base": {"steps": 2, "polish_steps": 1, "batch_size": 2, "eval_examples": 2, "threads": 1},
    "pairs": {"n_train": 6, "n_eval": 4, "workers": 1},
    "game": {"n_players": 3, "rounds": 1, "group_size": 2, "clue": {"max_new_tokens": 6}, "decision": {"max_new_tokens": 6}},
    "train": {"iterations": 1, "games_per_iteration": 2},
    "eval": {"games": 2, "vqa_per_type": 1, "max_new_tokens": 6},
}


def _merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        base[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return base


def _run(cmd, cwd, env):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory):
    """One Prefect server for every stage's flow (as a user would run it): without it each
    `python -m flows.*` stage starts and stops its own temporary server (~15 s each here)."""
    home = tmp_path_factory.mktemp("prefect-home")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": str(home)}
    log = (home / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (home / "server.log").read_text()[-2000:]
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()


# Written into the stages' interpreters (PYTHONPATH): at exit each process appends the project
# files it imported, so the test can hold every stage's code deps to what it really reads.
IMPORT_HOOK = """
import atexit, json, os, sys

def _dump():
    files = set()
    for name, module in list(sys.modules.items()):
        top = sys.modules.get(name.split(".")[0])
        path = getattr(module, "__file__", None)
        if name.split(".")[0] in ("visionzero", "flows", "tasks") and path and getattr(top, "__file__", None):
            root = os.path.dirname(os.path.dirname(os.path.abspath(top.__file__)))
            files.add(os.path.relpath(os.path.abspath(path), root).replace(os.sep, "/"))
    with open(os.environ["VZ_IMPORT_LOG"], "a") as fh:
        fh.write(json.dumps({"argv": sys.argv, "files": sorted(files)}) + "\\n")

if os.environ.get("VZ_IMPORT_LOG"):
    atexit.register(_dump)
"""


def _stage_of(argv: list[str]) -> str | None:
    """The dvc.yaml stage a process ran (from its command line)."""
    if argv[1:3] == ["model", "prepare"]:
        return "base_model"
    if argv[1:3] == ["pairs", "--domain"]:
        return f"pairs@{argv[3]}"
    script = Path(argv[0]).as_posix()
    for module, stage in (("flows/train.py", "train"), ("flows/evaluate.py", "evaluate"), ("flows/promote.py", "register")):
        if script.endswith(module):
            return stage
    return None


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory, repo_root, prefect_api):
    """A copy of the project's pipeline files in a fresh git + DVC repository (with the
    project's DVC config: the offline plots page), after one `dvc repro`."""
    tmp = tmp_path_factory.mktemp("dvc")
    repo = tmp / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "params.yaml", ".gitignore"):
        shutil.copy(repo_root / name, repo / name)
    for name in ("flows", "tasks", "visionzero"):
        shutil.copytree(repo_root / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    params = _merge(yaml.safe_load((repo / "params.yaml").read_text()), TINY)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    hook = tmp / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(IMPORT_HOOK)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p),
        "VZ_IMPORT_LOG": str(tmp / "imports.jsonl"),
        "PREFECT_API_URL": prefect_api,
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
    }  # fmt: skip
    _run(["git", "init", "-q"], repo, env)
    _run([sys.executable, "-m", "dvc", "init", "-q"], repo, env)
    for name in ("config", "plots.html"):
        shutil.copy(repo_root / ".dvc" / name, repo / ".dvc" / name)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "init"], repo, env)
    first = _run([sys.executable, "-m", "dvc", "repro"], repo, env)
    imports: dict[str, set[str]] = {}
    for line in (tmp / "imports.jsonl").read_text().splitlines():
        record = json.loads(line)
        if stage := _stage_of(record["argv"]):
            imports.setdefault(stage, set()).update(record["files"])
    return repo, env, first, imports


DVC = [sys.executable, "-m", "dvc"]


def _lock(repo) -> dict:
    return yaml.safe_load((repo / "dvc.lock").read_text())["stages"]


def _status(repo, env) -> dict:
    return json.loads(_run([*DVC, "status", "--json"], repo, env))


def test_repro_runs_everything_then_nothing(reproduced):
    repo, env, first, _ = reproduced
    for stage in ("base_model", "pairs@clevr", "train", "evaluate", "register"):
        assert f"Running stage '{stage}'" in first, stage
    summary = json.loads((repo / "runs/train/summary.json").read_text())
    assert summary["iteration"] == 1
    results = json.loads((repo / "runs/eval/results.json").read_text())
    assert "win_rate" in results
    decision = json.loads((repo / "runs/register/decision.json").read_text())
    # the register stage ran the gate: 2 held-out games cannot show a won match (Wilson low < 0.5)
    assert results["match/ci_low"] < 0.5 and decision["promoted"] is False
    assert decision["reason"].startswith("not shown to beat the frozen opponent")

    second = _run([*DVC, "repro"], repo, env)
    assert "Running stage" not in second and "up to date" in second

    shown = _run([*DVC, "metrics", "show", "--json"], repo, env)
    assert "win_rate" in shown and "base/caption_accuracy" in shown  # the base stage's skills
    # committed metrics and plots carry no timings: the same seed gives the same bytes
    assert "time" not in (repo / "runs/train/curves.csv").read_text().splitlines()[0]


def test_every_file_a_stage_writes_is_declared(reproduced):
    repo, _, _, _ = reproduced
    declared = [o["path"] for stage in _lock(repo).values() for o in stage.get("outs", [])]
    written = [p.relative_to(repo).as_posix() for p in (repo / "runs").rglob("*") if p.is_file()]
    # DVC's own .gitignore; MLflow's delivery state, which every stage that logs updates (dvc.yaml header)
    tool_state = {".gitignore", "mlflow_run.json", "mlflow_outbox.jsonl"}
    undeclared = [f for f in written if Path(f).name not in tool_state
                  and not any(f == d or f.startswith(d + "/") for d in declared)]  # fmt: skip
    assert not undeclared, undeclared
    for path in ("runs/eval/curve.csv", "runs/train/curves.png", "runs/eval/results.json"):
        assert path in declared, path


def test_plots_show_renders_every_plot_offline_without_warnings(reproduced):
    repo, env, _, _ = reproduced
    done = subprocess.run([*DVC, "plots", "show"], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    said = done.stdout + done.stderr
    assert "WARNING" not in said and "Could not find" not in said, said[-3000:]
    page = (repo / "dvc_plots" / "index.html").read_text()
    assert "<script src=" not in page and "cdn." not in page  # vega comes inlined, not from a CDN
    assert "vegaEmbed" in page
    plots = json.loads(_run([*DVC, "plots", "show", "--json"], repo, env))["data"]
    for plot in ("votes", "rewards", "update", "stage", "evaluation"):
        assert plots[plot][0]["content"]["data"]["values"], plot  # drawn from real rows
        assert f'id = "{plot}"' in page, plot
    fields = {row.get("field") for row in plots["evaluation"][0]["content"]["data"]["values"]}
    assert {"win_rate", "game_spy_identified", "vqa_accuracy"} <= fields
    assert plots["runs/train/curves.png"][0]["type"] == "image"


def test_stage_code_deps_cover_what_each_stage_imports(reproduced):
    repo, _, _, imports = reproduced
    lock = _lock(repo)
    assert set(imports) == set(lock), set(imports) ^ set(lock)
    for stage, files in imports.items():
        deps = [d["path"] for d in lock[stage]["deps"]]
        missing = sorted(f for f in files if not any(f == d or f.startswith(d + "/") for d in deps))
        assert not missing, f"{stage} imports files its deps miss: {missing}"
    never = {"train": ["visionzero/tracking/registry.py", "flows/promote.py", "tasks/registry.py"],
             "evaluate": ["visionzero/tracking/registry.py", "flows/promote.py", "tasks/registry.py"],
             "pairs@clevr": ["visionzero/models/loading.py", "visionzero/train/loop.py"]}  # fmt: skip
    for stage, files in never.items():
        deps = [d["path"] for d in lock[stage]["deps"]]
        assert not [f for f in files if any(f == d or f.startswith(d + "/") for d in deps)], stage


def _edited(path: Path, change):
    """Apply `change` to a file's text; returns a callable restoring it."""
    original = path.read_text()
    path.write_text(change(original))
    return lambda: path.write_text(original)


def test_changes_rerun_only_the_stages_that_read_them(reproduced):
    repo, env, _, _ = reproduced
    assert _status(repo, env) == {}

    def setting(section: str, key: str, value):
        def change(text: str) -> str:
            data = yaml.safe_load(text)
            node = data
            for part in section.split("."):
                node = node[part]
            node[key] = value
            return yaml.safe_dump(data, sort_keys=False)

        return change

    # only clevr is trained: the chart settings are nobody's input
    restore = _edited(repo / "params.yaml", setting("pairs.chart", "min_values", 3))
    try:
        assert _status(repo, env) == {}
    finally:
        restore()
    restore = _edited(repo / "params.yaml", setting("registry", "margin", 0.5))
    try:
        assert set(_status(repo, env)) == {"register"}
    finally:
        restore()
    # registry and promotion code is the register stage's alone
    for path in ("visionzero/tracking/registry.py", "flows/promote.py", "tasks/registry.py"):
        restore = _edited(repo / path, lambda text: text + "\n# touched\n")
        try:
            assert set(_status(repo, env)) == {"register"}, path
        finally:
            restore()
    assert _status(repo, env) == {}


def test_experiment_reruns_training_not_the_data(reproduced):
    """An experiment with one setting changed re-runs training and what follows, not the data;
    run in a temporary workspace (`--temp`), it still logs a new MLflow run, tagged with the
    experiment's name, to the project's own store (the relative sqlite path is resolved
    against DVC_ROOT, not the temporary folder DVC deletes afterwards)."""
    from mlflow import MlflowClient

    repo, env, _, _ = reproduced
    exp = _run([*DVC, "exp", "run", "--temp", "-S", "train.lr=0.0002"], repo, env)
    assert "Running stage 'train'" in exp and "Running stage 'pairs@clevr'" not in exp
    shown = json.loads(_run([*DVC, "exp", "show", "--json"], repo, env))
    assert "0.0002" in json.dumps(shown)
    client = MlflowClient(f"sqlite:///{repo}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    tagged = [r for r in runs if r.data.tags.get("dvc.exp_name")]
    assert len(tagged) == 1 and tagged[0].data.params["train.lr"] == "0.0002"  # a new run, not the first one's
    assert len(runs) == 2
