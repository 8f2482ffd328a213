#!/usr/bin/env bash
# Rebuilds the JupyterLab sidebar (labextension/) into foundry_jupyter/labextension and links it into
# Jupyter's labextensions folder, so a browser reload picks up a change. `pip install -e .` does the
# same build once; this is for working on the TypeScript. `--prod` makes the minified build.
set -euo pipefail
cd "$(dirname "$0")/.."

build="build"
if [ "${1:-}" = "--prod" ]; then build="build:prod"; fi

(cd labextension && jlpm install && jlpm run "$build")
jupyter labextension develop --overwrite .
# `develop` copies install.json into the build folder; the wheel already adds the top-level one at that
# path, and two files at one path make the next `pip install -e .` fail.
rm -f foundry_jupyter/labextension/install.json
jupyter labextension list 2>&1 | grep foundry-jupyter
