"""Training and export (needs TensorFlow: `pip install 'edgehouse[train]'`). Never imported on the gateway."""
