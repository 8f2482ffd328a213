"""Benchmarks: foundry-jupyter's REST API against Foundry Local's runtime and a plain og loop.

`python -m benchmarks.run` is the one command; see benchmarks/README.md.
"""
