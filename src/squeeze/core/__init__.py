"""Core types every layer shares: errors, result types, configs, formatting, statistics,
faults, atomic output."""

__version__ = "0.1.0"
