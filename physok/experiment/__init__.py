"""The tokeniser-pretraining experiment: run the five conditions, compare them, report."""
