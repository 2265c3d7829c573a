"""Prefect: the flows that wrap the pipeline in batches, their deployments, and ``aftersale up``.

Each flow names its batch, calls library code, logs and returns its counts and publishes them
as artifacts; no business rule lives only here. The top-level ``flows/`` folder holds the
entrypoints ``prefect.yaml`` names, one import each.
"""
