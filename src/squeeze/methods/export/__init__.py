"""Deployment formats: ONNX export with validation, and reading exports back."""
