"""Model layer: families, the image-only processor, the offline tiny VLM and the loader."""

from visionzero.models.loading import LoadedModel, ModelLoadError, load_model, resolve_spec

__all__ = ["LoadedModel", "ModelLoadError", "load_model", "resolve_spec"]
