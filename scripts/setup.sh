#!/usr/bin/env bash
# Installs what arapack needs on a fresh Debian machine, builds the release binary and runs
# arapack's main job on a shipped example. Run as root (or with sudo available).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends libzstd-dev libssl-dev libopenblas-dev pkg-config zstd python3-venv >/dev/null

swift build -c release --product arapack
echo "== arapack inspect on the shipped example (Fixtures/safetensors/valid/sharded) =="
.build/release/arapack inspect Fixtures/safetensors/valid/sharded --check-data
