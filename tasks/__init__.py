"""Prefect tasks: thin wrappers over visionzero library functions.

Tasks take and return paths, ids and small dicts of numbers, never models or tensors.
This package is not installed; it is imported from the project root (docs/architecture.md).
"""
