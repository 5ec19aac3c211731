"""Quantization: choose a backend, run the real quantizer, validate agreement, report."""
