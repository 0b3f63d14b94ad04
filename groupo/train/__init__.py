"""Training machinery: setup, the loop (collect -> score -> optimise -> log), loss, checkpoints,
logging, warm start, multi-process helpers, interrupts and fault injection."""
