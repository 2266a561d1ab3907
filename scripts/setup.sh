#!/usr/bin/env bash
# Installs what arapack needs on a fresh Debian machine, builds the release binary and runs
# arapack's main job on a shipped example: convert a training checkpoint (a real 2-process FSDP
# full state dict with its tokenizer) into a release bundle and archive, then verify both.
# Run as root (or with sudo available).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends libzstd-dev libssl-dev pkg-config zstd python3-venv openssl g++ >/dev/null

swift build -c release --product arapack
example=.build/example
rm -rf "$example" && mkdir -p "$example"
echo "== arapack convert Fixtures/torch/valid/fsdp_full_state_dict.pt -> $example/arafusion-tiny (+ .tar.zst) =="
.build/release/arapack convert Fixtures/torch/valid/fsdp_full_state_dict.pt "$example/arafusion-tiny" \
    --tokenizer Fixtures/tokenizer/valid --archive
echo "== arapack verify $example/arafusion-tiny.tar.zst =="
.build/release/arapack verify "$example/arafusion-tiny.tar.zst"
