"""Operator commands beside the pipeline: what waits for review, and a journey's preview."""
