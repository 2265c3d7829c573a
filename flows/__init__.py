"""Prefect flows: the outermost adapter. Each names its batch, calls library code, logs and
returns its counts and publishes them as artifacts; no business rule lives only here."""
