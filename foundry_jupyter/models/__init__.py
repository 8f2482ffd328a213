"""Layer 2: catalog, cache, downloads, model import. No Jupyter, no HTTP."""
