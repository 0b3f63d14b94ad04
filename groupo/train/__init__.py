"""Training machinery: the loop, loss, checkpoints, logging, warm start."""
