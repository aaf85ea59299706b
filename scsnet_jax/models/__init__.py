"""Flax NNX models of SCSNet (the layer table: docs/architecture.md); no
training code is imported from here.

Importing this package imports nothing else; ``geometry`` (numpy only) holds
the model's input geometry for numpy-only code (the data pipeline's grain
workers, the export reader).
"""
