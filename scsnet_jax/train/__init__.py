"""Training: the state, the step, the loop, losses, checkpoints."""
