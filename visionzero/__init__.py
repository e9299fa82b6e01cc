"""Vision-Zero: a VLM improves itself by playing "Who is the spy?" on image pairs.

Layers (docs/architecture.md): the pure method core (settings, pairs, game, rl math), the
model layer (loading, generation backends, the update), and outside this package the
Prefect layer (flows/, tasks/) that composes them into the pipeline.
"""

__version__ = "0.1.0"
