#!/usr/bin/env bash
# Runs the whole test suite. The interop tests need a Python with the official `safetensors`
# package and `jsonschema`: this script makes one in a virtualenv outside the repository
# (ARAPACK_VENV, default /tmp/arapack-venv) unless ARAPACK_PYTHON already names one.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${ARAPACK_PYTHON:-}" ]; then
    venv="${ARAPACK_VENV:-/tmp/arapack-venv}"
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import safetensors, numpy, jsonschema" 2>/dev/null; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q safetensors==0.8.0 numpy==2.4.6 jsonschema==4.26.0
    fi
    export ARAPACK_PYTHON="$venv/bin/python"
fi

swift test --disable-swift-testing
