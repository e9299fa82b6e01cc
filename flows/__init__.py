"""Prefect flows composing the tasks into the Vision-Zero pipeline.

Run from the project root: `python -m flows.pipeline`, `python -m flows.train`, ... (the
DVC stages do exactly that), or deploy them (prefect.yaml, flows/serve.py).
"""
