"""Performance benchmarks (``make bench``): a synthetic shop and the runner that times it."""
