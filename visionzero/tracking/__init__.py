"""MLflow tracking and model registry (pipeline layer: never imported by the method core)."""
