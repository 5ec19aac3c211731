"""Sweeps and recipes: chains of compression steps, cached, measured alike, gated."""
