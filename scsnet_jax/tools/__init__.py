"""Offline scripts of the CPU recipe: scoring a run on unseen photos
(evaluate_photos) and drawing its training curves (plot_curves)."""
