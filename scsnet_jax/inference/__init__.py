"""Inference: the tiled predictor, the runner behind predict and the app,
image files, output planning, loading trained generators."""
