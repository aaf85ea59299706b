"""Input data: sources, degradations, the grain pipeline."""
