"""The orchestration side of the generation worker (worker.py): start it, talk to it.

`WorkerProcess` starts the worker under any interpreter (the vLLM venv on a GPU machine),
waits until it listens, and stops it; `RemotePolicy` is the `Policy` interface over its
HTTP endpoints, and `load(path)` hands it each new policy checkpoint.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from visionzero.rollout.types import ChatLike, Completion, Sampling


class WorkerError(RuntimeError):
    """The worker failed to start or answered with an error."""


class RemotePolicy:
    """`Policy` over a running worker's /generate; `load` swaps the worker's weights."""

    def __init__(self, url: str, timeout: float = 3600.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = json.loads(exc.read() or b"{}").get("error", exc.reason)
            raise WorkerError(f"worker {path} failed: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise WorkerError(f"worker at {self.url} unreachable: {getattr(exc, 'reason', exc)}") from None

    def health(self) -> dict:
        return self._call("/health")

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


class WorkerProcess:
    """A worker subprocess serving `model` on loopback; use as a context manager."""

    def __init__(self, model: str | Path, engine: str = "hf", python: str = "", host: str = "127.0.0.1",
                 start_timeout: float = 600.0, extra_args: Sequence[str] = ()):  # fmt: skip
        ready = Path(tempfile.mkdtemp(prefix="vz-worker-")) / "ready.json"
        cmd = [python or sys.executable, "-m", "visionzero.rollout.worker", "--engine", engine,
               "--model", str(Path(model).resolve()), "--host", host, "--port", "0", "--ready-file", str(ready),
               *extra_args]  # fmt: skip
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
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
        self.policy = RemotePolicy(f"http://{address['host']}:{address['port']}")

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
