"""Training engine: optimisers, callbacks, the trainer loop with checkpoints."""
