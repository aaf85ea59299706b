"""Evaluation: metrics, the protocol, baselines, reports, validation."""
