"""What squeeze reads and writes: checkpoints and export folders, opened the one way."""
