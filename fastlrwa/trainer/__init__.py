"""The training loop: orchestrates updates, logs, evaluates and checkpoints."""
