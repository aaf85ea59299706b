"""Inference: tiling, image files, loading trained generators."""
