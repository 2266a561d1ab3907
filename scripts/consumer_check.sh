#!/usr/bin/env bash
# arapack's libraries as a package dependency: a throwaway package that depends on this checkout by path and
# uses ArapackFormats (a safe torch.save reader) and ArapackModel (the config and forward pass) must build. SwiftPM refuses a dependency
# whose targets use unsafeFlags, so this fails if one comes back.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/Sources/Consumer"
cat > "$work/Package.swift" <<SWIFT
// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Consumer",
    dependencies: [.package(path: "$root")],
    targets: [
        .executableTarget(name: "Consumer", dependencies: [
            .product(name: "ArapackFormats", package: "$(basename "$root")"),
            .product(name: "ArapackModel", package: "$(basename "$root")"),
        ]),
    ]
)
SWIFT
cat > "$work/Sources/Consumer/main.swift" <<'SWIFT'
import ArapackFormats
import ArapackModel

let checkpoint = try TorchCheckpoint(path: CommandLine.arguments[1])
let names = checkpoint.tensorNames.map(ModelFamily.normalize)
print(names.count, "tensors,", names.filter { ModelFamily.layerTensor($0) != nil }.count, "in layers")
SWIFT
swift build --package-path "$work" 2>&1 | tail -1
out=$("$work/.build/debug/Consumer" "$root/Fixtures/torch/valid/training_dict.pt")
[ "$out" = "29 tensors, 24 in layers" ] || { echo "consumer check: unexpected output: $out" >&2; exit 1; }
echo "consumer check: a package depending on arapack's libraries builds and reads a checkpoint ($out)"
