"""The tiny model's base stage: supervised skills from scene graphs, standing in for pretraining."""
