"""The step engine: registry, step types, the runner, gates."""
