"""Video: colourise and enlarge a clip with colours that hold still.

``python -m scsnet_jax.video`` (``cli``): frames streamed through PyAV
(``io``), scene cuts from luminance statistics (``scenes``), keyframes
coloured on their own and the frames after them from the coloured output
(``propagate``); ``measure`` scores it on synthetic clips with ground truth
and ``benchmark`` times it (docs/video.md).
"""
