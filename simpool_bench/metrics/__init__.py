"""Metrics: pure functions for the math, thin streaming accumulators around them."""
