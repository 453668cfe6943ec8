#!/usr/bin/env bash
# Installs everything delvm_tf, its tests and its reproduction scripts need on a bare Debian machine.
# GPU users: replace tensorflow-cpu by `pip install "tensorflow[and-cuda]==2.21.0"`.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  # Fashion-MNIST (the original IDX files) for the image experiments and tests.
  if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  fi
fi
python -m pip install -q --disable-pip-version-check -r requirements.txt
python -m pip install -q --disable-pip-version-check --no-deps -e .
