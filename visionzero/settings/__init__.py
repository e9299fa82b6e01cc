"""One typed schema for params.yaml, its loader and CLI overrides."""

from visionzero.settings.loader import (
    DEFAULT_PARAMS,
    SettingsError,
    apply_overrides,
    flatten,
    load_settings,
    settings_dict,
    settings_hash,
)
from visionzero.settings.schema import Settings

__all__ = [
    "DEFAULT_PARAMS",
    "Settings",
    "SettingsError",
    "apply_overrides",
    "flatten",
    "load_settings",
    "settings_dict",
    "settings_hash",
]
