"""Render settings as commented YAML (the format of params.yaml)."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def render_yaml(settings: BaseModel, comments: bool = True, indent: int = 0) -> str:
    """YAML text of `settings`, one key per line, each followed by its description."""
    lines: list[str] = []
    pad = " " * indent
    for name, field in type(settings).model_fields.items():
        key = field.alias or name
        value = getattr(settings, name)
        note = f"  # {field.description}" if comments and field.description else ""
        if isinstance(value, BaseModel):
            if indent == 0 and lines:
                lines.append("")
            lines.append(f"{pad}{key}:{note}")
            lines.append(render_yaml(value, comments, indent + 2))
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}{note}")
    return "\n".join(lines)
