#!/usr/bin/env bash
# Produces a release artifact from a fixture checkpoint exactly as a user's CI would (convert with
# --archive, then verify the archive), twice from scratch, and fails if the two archives differ.
set -euo pipefail
cd "$(dirname "$0")/.."
arapack=.build/release/arapack
[ -x "$arapack" ] || swift build -c release --product arapack
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for run in 1 2; do
    mkdir -p "$work/$run"
    SOURCE_DATE_EPOCH=1700000000 "$arapack" convert Fixtures/torch/valid/fsdp_full_state_dict.pt "$work/$run/arafusion-tiny" \
        --tokenizer Fixtures/tokenizer/valid --archive --quiet
    "$arapack" verify "$work/$run/arafusion-tiny.tar.zst" --quiet
    (cd "$work/$run" && sha256sum -c arafusion-tiny.tar.zst.sha256)
done
if cmp "$work/1/arafusion-tiny.tar.zst" "$work/2/arafusion-tiny.tar.zst"; then
    echo "release check: the two archives are byte-identical ($(cut -d' ' -f1 "$work/1/arafusion-tiny.tar.zst.sha256"))"
else
    echo "release check: FAILED, the two archives differ" >&2
    exit 1
fi
