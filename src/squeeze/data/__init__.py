"""Data: specs, readers, examples and splits, tokenization, bundled assets."""
