"""The orchestration side of the generation worker (worker.py): start it, talk to it.

`WorkerProcess` starts the worker under any interpreter (the vLLM venv on a GPU machine),
waits until it listens, and stops it; `RemotePolicy` is the `Policy` interface over its
HTTP endpoints, and `load(path)` hands it each new policy checkpoint.

Every wait is bounded: a call fails after `timeout` s, and while it waits, every
`heartbeat` s the worker's liveness is checked (process alive, not stopped, /health
answering within `heartbeat` s), so a dead or SIGSTOPped worker fails the call in about
two heartbeats instead of hanging the training.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from visionzero.rollout.types import ChatLike, Completion, Sampling


class WorkerError(RuntimeError):
    """The worker failed to start or answered with an error."""


class RemotePolicy:
    """`Policy` over a running worker's /generate; `load` swaps the worker's weights.

    `liveness()` (optional) returns why the worker is not alive, or None; it is asked every
    `heartbeat` s while a call waits."""

    def __init__(self, url: str, token: str, timeout: float = 900.0, heartbeat: float = 10.0,
                 liveness: Callable[[], str | None] | None = None):  # fmt: skip
        self.url = url.rstrip("/")
        self.token = token
        self.timeout, self.heartbeat = timeout, heartbeat
        self.liveness = liveness

    def _request(self, path: str, body: dict | None, timeout: float) -> dict:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        request = urllib.request.Request(self.url + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = json.loads(exc.read() or b"{}").get("error", exc.reason)
            raise WorkerError(f"worker {path} failed: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise WorkerError(f"worker at {self.url} unreachable: {getattr(exc, 'reason', exc)}") from None

    def health(self) -> dict:
        """/health within one heartbeat (also the liveness probe while a call waits)."""
        return self._request("/health", None, self.heartbeat)

    def _call(self, path: str, body: dict | None = None) -> dict:
        """The request in a helper thread; this one watches the clock and the worker."""
        result: dict = {}

        def run() -> None:
            try:
                # (the socket's own limit only backstops the clock below)
                result["value"] = self._request(path, body, self.timeout + 2 * self.heartbeat)
            except WorkerError as exc:
                result["error"] = exc

        thread = threading.Thread(target=run, name=f"worker{path}", daemon=True)
        start = time.monotonic()
        thread.start()
        while thread.is_alive():
            thread.join(self.heartbeat)
            if not thread.is_alive():
                break
            if time.monotonic() - start > self.timeout:
                raise WorkerError(f"worker {path} gave no answer within {self.timeout:.0f} s (rollout.worker_timeout)")
            reason = self.liveness() if self.liveness else None
            if reason:
                raise WorkerError(f"worker {path} abandoned: the worker {reason}")
        if "error" in result:
            raise result["error"]
        return result["value"]

    def load(self, path: str | Path) -> dict:
        return self._call("/load", {"path": str(Path(path).resolve())})

    def generate(self, requests: Sequence[ChatLike], sampling: Sampling, seed: int = 0) -> list[list[Completion]]:
        body = {
            "requests": [{"messages": r.messages} for r in requests],
            "sampling": {"max_new_tokens": sampling.max_new_tokens, "temperature": sampling.temperature,
                         "top_p": sampling.top_p, "top_k": sampling.top_k, "n": sampling.n},  # fmt: skip
            "seed": seed,
        }
        out = self._call("/generate", body)["completions"]
        return [[Completion(**c) for c in cs] for cs in out]


def _stopped(pid: int) -> bool:
    """Whether the process is stopped (SIGSTOP, a debugger): Linux /proc; False elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] in ("T", "t")


class WorkerProcess:
    """A worker subprocess serving `model` on loopback; use as a context manager.

    It gets a fresh token (in its environment), loads only from `model` and the `allow`
    folders, and exits if this process dies."""

    def __init__(self, model: str | Path, engine: str = "hf", python: str = "", host: str = "127.0.0.1",
                 start_timeout: float = 600.0, extra_args: Sequence[str] = (), allow: Sequence[str | Path] = (),
                 timeout: float = 900.0, heartbeat: float = 10.0):  # fmt: skip
        ready = Path(tempfile.mkdtemp(prefix="vz-worker-")) / "ready.json"
        token = secrets.token_urlsafe(32)
        roots = [Path(model).resolve(), *(Path(a).resolve() for a in allow)]
        cmd = [python or sys.executable, "-m", "visionzero.rollout.worker", "--engine", engine,
               "--model", str(Path(model).resolve()), "--host", host, "--port", "0", "--ready-file", str(ready),
               "--parent-pid", str(os.getpid()), *[a for r in roots for a in ("--allow", str(r))], *extra_args]  # fmt: skip
        env = {**os.environ, "VZ_WORKER_TOKEN": token}
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + start_timeout
        while not ready.exists():
            if self.process.poll() is not None:
                tail = (self.process.stderr.read().strip().splitlines() or ["no output"])[-1]
                raise WorkerError(f"worker exited with {self.process.returncode}: {tail}")
            if time.monotonic() > deadline:
                self.close()
                raise WorkerError(f"worker did not start within {start_timeout:.0f} s")
            time.sleep(0.1)
        address = json.loads(ready.read_text())
        self.policy = RemotePolicy(f"http://{address['host']}:{address['port']}", token, timeout, heartbeat, self.liveness)

    def liveness(self) -> str | None:
        """Why the worker cannot answer (exited, stopped, /health silent), or None."""
        if self.process.poll() is not None:
            return f"exited with {self.process.returncode}"
        if _stopped(self.process.pid):
            return f"(pid {self.process.pid}) is stopped"
        try:
            self.policy.health()
        except WorkerError as exc:
            return f"(pid {self.process.pid}) did not answer /health within {self.policy.heartbeat:.0f} s ({exc})"
        return None

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def __enter__(self) -> "WorkerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
