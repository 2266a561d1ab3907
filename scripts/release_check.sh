#!/usr/bin/env bash
# Produces a release artifact from a fixture checkpoint exactly as a user's CI would (convert --dtype bf16
# --parity --archive, then verify the archive and its parity), three times from scratch: with the kernels' widest
# instruction set, with ARAPACK_ISA=avx2 (and generic) on one thread, each into a folder of another name and
# depth; it fails unless every archive has the same bytes, and so does the parity report of one bundle under each.
set -euo pipefail
cd "$(dirname "$0")/.."
arapack=.build/release/arapack
[ -x "$arapack" ] || swift build -c release --product arapack
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
source=Fixtures/trained/arafusion_tiny_ar.pt
runs=("1/arafusion-tiny:" "2/a/b/c/other-name:ARAPACK_ISA=avx2 ARAPACK_THREADS=1" "3/x:ARAPACK_ISA=generic ARAPACK_THREADS=1")
for run in "${runs[@]}"; do
    dst="$work/${run%%:*}" settings="${run#*:}"
    mkdir -p "$(dirname "$dst")"
    env $settings SOURCE_DATE_EPOCH=1700000000 "$arapack" convert "$source" "$dst" --tokenizer Fixtures/trained/tokenizer \
        --dtype bf16 --parity --archive --quiet >/dev/null
    "$arapack" verify "$dst.tar.zst" --quiet >/dev/null
    (cd "$(dirname "$dst")" && sha256sum -c --quiet "$(basename "$dst").tar.zst.sha256")
    # The same bundle's parity under these settings (the report names the bundle's path, so always the first's).
    env $settings "$arapack" verify "$work/1/arafusion-tiny" --parity --against "$source" --report "$dst.report.json" --quiet >/dev/null
    echo "release check: ${settings:-default settings}: $(sha256sum < "$dst.tar.zst" | cut -c1-16)… archive, $(sha256sum < "$dst.report.json" | cut -c1-16)… parity report"
done
first="$work/${runs[0]%%:*}"
for run in "${runs[@]:1}"; do
    dst="$work/${run%%:*}"
    cmp "$first.tar.zst" "$dst.tar.zst" || { echo "release check: FAILED, the archives of $first and $dst differ" >&2; exit 1; }
    cmp "$first.report.json" "$dst.report.json" || { echo "release check: FAILED, the parity reports of $first and $dst differ" >&2; exit 1; }
done
echo "release check: every archive and parity report is byte-identical"
