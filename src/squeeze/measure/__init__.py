"""Measuring artifacts: metrics on held-out data, latency, the machine a figure was taken on."""
