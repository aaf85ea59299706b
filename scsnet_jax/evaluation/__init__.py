"""Evaluation: which question each evaluation answers.

``validation`` (every ``train.eval_every_steps`` while training, and
``tools/evaluate_photos``): *is this run learning to colourise?* The same
few held-out photos each time; the model (EMA weights) against the trivial
baseline of each mode (gray bicubic; the reference's colours copied; the
reference's mean colour), by L-PSNR, RGB PSNR, CIEDE2000 and colourfulness,
plus the labelled sample grid.

``protocol`` (``--mode=eval``): *how good is a finished model, as the paper
measures it?* Thousands of eval-split images in three modes (automatic,
self-reference, other-reference), by PSNR/SSIM (BasicSR conventions), FID and
colourfulness, beside ``baselines``; a JSON report and a markdown table.

Both are ``common.Evaluator``s: built once with their data and compiled
renderer (``common.render_nlab``), then ``run(params) -> Evaluation``
(scores named '<mode>/<method>/<metric>', written under the evaluator's
prefix). ``metrics`` holds the metrics: colourfulness and the uint8
rounding are one function for both, PSNR one convention (``psnr`` on the
host, its tested device twin ``psnr_ssim_jax`` in the protocol); ``report``
writes the protocol's files.
"""
