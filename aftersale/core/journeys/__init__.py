"""Journeys: the YAML model, its loader and checks, and the pure engine that runs them."""
