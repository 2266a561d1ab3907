// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "arapack",
    products: [
        .executable(name: "arapack", targets: ["arapack"]),
        .library(name: "ArapackFormats", targets: ["ArapackFormats"]),
        .library(name: "ArapackModel", targets: ["ArapackModel"]),
        .library(name: "ArapackRelease", targets: ["ArapackRelease"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .target(name: "CSystem"),
        // No unsafeFlags: SwiftPM refuses them in a dependency, and its release -O2 runs these loops as fast as -O3
        // did (Benchmarks/kernels/compare_flags.sh, BENCHMARKS.md).
        .target(name: "CKernels"),
        .target(name: "ArapackTensor"),
        .target(name: "ArapackFormats", dependencies: ["ArapackTensor", "COpenSSL", "CSystem", "CKernels"]),
        // One way down: arapack (CLI) → ArapackRelease → ArapackModel → ArapackFormats → ArapackTensor.
        .target(name: "ArapackModel", dependencies: ["ArapackFormats", "ArapackTensor", "CKernels", "CSystem"]),
        .target(name: "ArapackRelease", dependencies: ["ArapackModel", "ArapackFormats", "ArapackTensor", "CZstd", "COpenSSL", "CKernels"],
                resources: [.embedInCode("Forms/Native/Wrapper/configuration_arafusion.py"), .embedInCode("Forms/Native/Wrapper/modeling_arafusion.py")]),
        .executableTarget(
            name: "arapack",
            dependencies: [
                "ArapackRelease", "ArapackModel", "ArapackFormats", "ArapackTensor", "CSystem",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(name: "arapack-bench", dependencies: ["ArapackRelease", "ArapackModel", "ArapackFormats", "ArapackTensor", "CKernels"], path: "Benchmarks/ArapackBench"),
        .executableTarget(name: "arapack-fuzz", dependencies: ["ArapackRelease", "ArapackModel", "ArapackFormats", "ArapackTensor"], path: "Fuzz/ArapackFuzz"),
        .target(name: "ArapackTestSupport", dependencies: ["ArapackFormats", "ArapackTensor"], path: "Tests/ArapackTestSupport"),
        .executableTarget(name: "peak-memory", path: "Tests/PeakMemory"),
        .testTarget(name: "ArapackTensorTests", dependencies: ["ArapackTensor", "ArapackTestSupport"]),
        .testTarget(name: "SystemLibraryTests", dependencies: ["CZstd", "COpenSSL"]),
        .testTarget(name: "ArapackFormatsTests", dependencies: ["ArapackFormats", "ArapackTensor", "ArapackTestSupport"]),
        .testTarget(name: "ArapackModelTests", dependencies: ["ArapackModel", "ArapackRelease", "ArapackFormats", "ArapackTensor", "ArapackTestSupport", "CKernels"]),
        .testTarget(name: "ArapackReleaseTests", dependencies: ["ArapackRelease", "ArapackModel", "ArapackFormats", "ArapackTensor", "ArapackTestSupport"]),
        .testTarget(name: "ArapackCLITests", dependencies: ["arapack", "peak-memory", "ArapackFormats", "ArapackModel", "ArapackRelease", "ArapackTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
