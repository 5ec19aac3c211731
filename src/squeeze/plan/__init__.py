"""Plans of many steps: recipes, sweeps, the pipeline, the artifact cache, tune."""
