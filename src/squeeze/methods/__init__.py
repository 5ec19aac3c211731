"""Compression methods: each a config plus a registered handler."""
