"""Offline converters from public PyTorch weight files to ours."""
