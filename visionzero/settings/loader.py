"""Load params.yaml into the typed schema, apply `section.key=value` overrides, report errors.

Every problem becomes a `SettingsError` whose message is one line naming the key and the
reason, so the CLI can print it and exit 2 without a traceback.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from visionzero.settings.schema import Settings

DEFAULT_PARAMS = "params.yaml"
log = logging.getLogger("visionzero.settings")


class SettingsError(ValueError):
    """A bad params file or override; the message is one line for a human."""


def _describe(err: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in err["loc"] if p != "__root__") or "params"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key"
    msg = err["msg"].removeprefix("Value error, ")
    if "input" in err and not isinstance(err["input"], (dict, list)) and kind != "missing":
        return f"{key}: {msg} (got {err['input']!r})"
    return f"{key}: {msg}"


def _validate(data: dict[str, Any]) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SettingsError(_describe(errors[0]) + more) from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.lr=3e-4` -> (["train", "lr"], 0.0003). The value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise SettingsError(f"override {text!r}: expected section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of `data` with each override written at its dotted path."""
    data = json.loads(json.dumps(data))  # deep copy of plain YAML data
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise SettingsError(f"{'.'.join(path[: i + 1])}: is a value, not a section")
            node = child
        node[path[-1]] = value
    return data


MAX_NODES = 100_000  # YAML nodes after alias expansion: params.yaml has ~200


def _expanded_size(node: yaml.Node, memo: dict[int, int], path: set[int]) -> int:
    """Nodes `node` becomes once every alias is expanded (memoised: a shared anchor counts
    each time it is used, the way json/pydantic will copy it)."""
    if id(node) in memo:
        return memo[id(node)]
    if id(node) in path:
        raise SettingsError("an alias refers to the node that contains it (recursive YAML)")
    path.add(id(node))
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    size = 1
    for child in children:
        size += _expanded_size(child, memo, path)
        if size > MAX_NODES:
            break
    path.discard(id(node))
    memo[id(node)] = size
    return size


def safe_yaml(text: str) -> Any:
    """yaml.safe_load, refusing documents that aliases expand past MAX_NODES (a few hundred
    bytes of nested anchors can otherwise become gigabytes) or that refer to themselves."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}, set()) > MAX_NODES:
            raise SettingsError(f"YAML aliases expand past {MAX_NODES:,} nodes (an alias bomb?)")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_params_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise SettingsError(f"{path}: params file not found")
    if not path.is_file() and str(path) != os.devnull:  # /dev/null: no settings (the schema's defaults)
        raise SettingsError(f"{path}: not a regular file")  # a directory; a FIFO would block the read
    try:
        data = safe_yaml(path.read_text(encoding="utf-8"))
    except SettingsError as exc:
        raise SettingsError(f"{path}: {exc}") from None
    except RecursionError:
        raise SettingsError(f"{path}: YAML nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise SettingsError(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{path}: is not UTF-8 text") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: top level must be a mapping of sections")
    return data


def load_settings(path: str | Path | None = DEFAULT_PARAMS, overrides: Iterable[str] = ()) -> Settings:
    """Read `path` (None or a missing default file = schema defaults), write the selected
    profile over it, apply overrides, validate (settings/profiles.py: the precedence)."""
    from visionzero.settings.profiles import PROFILES, apply_profile

    overrides = list(overrides)
    data: dict[str, Any] = {}
    if path is not None and (Path(path).exists() or Path(path).name != DEFAULT_PARAMS):
        data = read_params_file(path)
    name = apply_overrides(data, overrides).get("profile", "paper")
    if name not in PROFILES:
        raise SettingsError(f"profile: unknown profile {name!r} (choose one of {', '.join(PROFILES)})")
    data, overridden = apply_profile(data, name)
    if overridden and path is not None:
        more = f" (+{len(overridden) - 3} more)" if len(overridden) > 3 else ""
        log.warning("%s: profile %s fixes %s%s; the file's value is not used (--set it, or profile: none)",
                    path, name, ", ".join(overridden[:3]), more)
    return _validate(apply_overrides(data, overrides))


def settings_dict(settings: BaseModel) -> dict[str, Any]:
    """Plain data as params.yaml spells it (aliases such as `lambda`)."""
    return settings.model_dump(mode="json", by_alias=True)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 1e-5}} -> {'train.lr': 1e-5}; lists are kept as values."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def settings_hash(section: BaseModel) -> str:
    """Stable short hash of a settings section (used to key caches such as the tiny model)."""
    blob = json.dumps(settings_dict(section), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
