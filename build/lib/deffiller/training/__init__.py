"""Training: the generic accelerate loop (`loop`) and the DefFiller training task."""
