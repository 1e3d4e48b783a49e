"""Evaluation metrics: VRMSE (`physok.metrics.vrmse`)."""
