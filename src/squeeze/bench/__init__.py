"""Measuring: the machine a figure was taken on (latency and size follow with export/bench)."""
