"""Pruning: unstructured magnitude sparsity and structured removal of heads, neurons, layers."""
