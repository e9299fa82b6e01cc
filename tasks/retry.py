"""When a failed task is worth retrying: transient errors only.

A retry helps when the failure may not happen again: a connection refused or reset, a
timeout, a server answering 5xx (or 408/429). It cannot help a permanent one: a 4xx answer
(a run or model version that does not exist, a bad parameter), bad settings, a missing file,
a bug. Retrying those only delays the one clear error line and runs the task's side effects
again, so every retrying task passes `retry_condition_fn=transient_only`.
"""

from __future__ import annotations

from typing import Any

# HTTP statuses that say "try again later"; every other 4xx is the request's own fault.
_RETRYABLE_4XX = {408, 425, 429}


def _status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (requests, httpx, urllib, MLflow), if any."""
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    if isinstance(code, int):
        return code
    code = getattr(exc, "code", None)  # urllib.error.HTTPError
    if isinstance(code, int) and 100 <= code < 600:
        return code
    get_code = getattr(exc, "get_http_status_code", None)  # MlflowException
    if callable(get_code):
        try:
            return int(get_code())
        except (TypeError, ValueError):
            return None
    return None


def _is_network(exc: BaseException) -> bool:
    """A connection or timeout failure of any of the HTTP stacks the pipeline talks through."""
    if isinstance(exc, (ConnectionError, TimeoutError)):  # builtins: refused, reset, broken pipe
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    # requests/urllib3 (MLflow's client), httpx (Prefect's), urllib (health checks), and the
    # tracking layer's own "server unreachable" error: matched by name, no import needed
    return bool(names & {"ConnectionError", "Timeout", "TimeoutException", "NetworkError", "RemoteProtocolError",
                         "NewConnectionError", "ProtocolError", "ReadTimeoutError", "URLError",
                         "TrackingUnavailable"})  # fmt: skip


def is_transient(exc: BaseException | None) -> bool:
    """True when `exc` (or an exception it was raised from) is a transient failure."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        status = _status(exc)
        if status is not None:  # an answer from a server decides by itself
            return status >= 500 or status in _RETRYABLE_4XX
        if _is_network(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _exception_of(state: Any) -> BaseException | None:
    data = getattr(state, "data", None)
    if isinstance(data, BaseException):
        return data
    try:
        result = state.result(raise_on_failure=False)
    except Exception as exc:  # noqa: BLE001 - reading the result re-raised it
        return exc
    return result if isinstance(result, BaseException) else None


def transient_only(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry only when the failure is transient."""
    return is_transient(_exception_of(state))
