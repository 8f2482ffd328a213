"""`python -m foundry_jupyter.server [ServerApp options]`: a Jupyter server with only this extension.

This is what `jupyter foundry service start` runs: the model service without JupyterLab or other
extensions, no browser.
"""

from __future__ import annotations

from .app import FoundryApp


def main() -> None:
    # This process exists only to serve models: other installed extensions stay out.
    FoundryApp.load_other_extensions = False
    FoundryApp.launch_instance()


if __name__ == "__main__":
    main()
