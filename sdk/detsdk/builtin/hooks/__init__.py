"""Built-in training hooks (``train.hooks``): early stopping, pipeline switch, MLflow tracking."""
