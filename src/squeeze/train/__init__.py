"""The one training loop, its config, resumable state and accelerate."""
