#!/usr/bin/env bash
# Runs once inside the new conda environment, from the directory snakemake was started in (the repository root):
# install the rnn_gradients package without touching the conda-provided dependencies.
set -euo pipefail
python -m pip install --no-deps --no-build-isolation .
