"""Models as files: architecture specs, loading and saving, shapes, sizes, runtimes, the info fact
sheet."""
