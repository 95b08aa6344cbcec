#!/usr/bin/env bash
# Fetch, into .whl/ (git-ignored through .git/info/exclude), the wheels that bench/device_check.sh
# needs on a lent GPU machine (Python 3.12, CUDA torch, no network; see the device tool's
# README): MediaPipe 0.10.14 (the landmarks; not in that machine's image), the protobuf 4
# MediaPipe requires, and nvdiffrast's sources (PyPI 'diffrp-nvdiffrast'; built there by
# torch's JIT, with the machine's nvcc and ninja). nvdiffrast is NVIDIA's non-commercial
# licence: a developer check only, never bundled. About 36 MB, under the 64 MiB a call carries.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
mkdir -p .whl
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl mediapipe==0.10.14 protobuf==4.25.9
python3 -m pip download -q --no-deps -d .whl diffrp-nvdiffrast==0.3.3.1
ls -l .whl
