"""Secrets in settings: credentials in URIs and fields the schema marks secret.

A tracking URI may carry a password (`http://user:secret@host`), and a field may be marked
secret in the schema (`Field(..., json_schema_extra={"secret": True})`). Whatever writes or
logs settings (checkpoint state.json, MLflow params, log lines, Prefect parameters) writes
`redacted_dict(settings)` or passes text through `redact_text`; the real values stay in
memory, where the code that needs them (the MLflow client) reads them.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import BaseModel

MASK = "***"
# scheme://userinfo@ ; userinfo ends at the last '@' before the host's path
_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/]*)@")


def _mask(match: re.Match) -> str:
    user, colon, _ = match["userinfo"].partition(":")
    # user:password keeps the user; a lone userinfo may itself be a token
    return f"{match['scheme']}{user}:{MASK}@" if colon else f"{match['scheme']}{MASK}@"


def redact_text(text: str) -> str:
    """`text` with the credentials of every `scheme://user:password@` (or `scheme://token@`)
    in it masked."""
    return _CREDENTIALS.sub(_mask, str(text))


def split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """(the URI without user and password, user, password); user/password None when absent."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri, None, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return bare, unquote(user) or None, unquote(password) if password else None


def secret_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Flattened keys (`section.key`) of the fields marked `json_schema_extra={"secret": True}`."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if extra.get("secret"):
            keys.add(key)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= secret_keys(annotation, key + ".")
    return keys


def _redact(data: Any, secrets: set[str], prefix: str = "") -> Any:
    if isinstance(data, dict):
        return {k: _redact(v, secrets, f"{prefix}{k}.") for k, v in data.items()}
    key = prefix[:-1]
    if key in secrets and data not in (None, ""):
        return MASK
    if isinstance(data, list):
        return [_redact(v, set(), "") for v in data]
    return redact_text(data) if isinstance(data, str) else data


def redacted_dict(settings: BaseModel) -> dict[str, Any]:
    """settings_dict(settings) with secret fields masked and URI passwords masked: what may
    be written to files, MLflow params or logs."""
    from visionzero.settings.loader import settings_dict

    return _redact(settings_dict(settings), secret_keys(type(settings)))
