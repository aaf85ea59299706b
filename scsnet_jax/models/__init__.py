"""Flax NNX models of SCSNet (no training code is imported from here).

Importing this package imports nothing else, so numpy-only code (the data
pipeline's grain workers) can read the model's input geometry from here.
"""

# Input height and width must be multiples of this (two stride-2 stages).
INPUT_MULTIPLE = 4
