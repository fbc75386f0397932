// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "swift-avml",
    platforms: [.macOS(.v15)],
    products: [
        // The full binary: capture, convert, verify, and uploads over HTTP(S).
        .executable(name: "avml", targets: ["avml"]),
        // The acquire-only binary: no HTTP or TLS stack (no SwiftNIO); `stream tcp` for the network.
        .executable(name: "avml-minimal", targets: ["avml-minimal"]),
        // Libraries for the fuzz package in Fuzz/.
        .library(name: "ImageFormats", targets: ["ImageFormats"]),
        .library(name: "MemorySources", targets: ["MemorySources"]),
        .library(name: "KernelSymbols", targets: ["KernelSymbols"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // CRC-32C with the CPU's instruction (SSE4.2 / ARMv8 CRC) and a table fallback.
        .target(name: "CCRC32C"),
        // Small libc calls Swift's Glibc module does not expose (sched_getaffinity, strptime).
        .target(name: "CSystemShims"),
        // SHA-256 from OpenSSL's libcrypto (libssl-dev), and its Swift face.
        .target(name: "COpenSSLSHA256", linkerSettings: [.linkedLibrary("crypto")]),
        .target(name: "Hashing", dependencies: ["COpenSSLSHA256"]),
        // On-disk formats: LiME and AVML records, Snappy (raw and framing), CRC-32C.
        .target(
            name: "ImageFormats",
            dependencies: [
                "CCRC32C",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // Where memory comes from: /proc/iomem, /proc/kcore, /dev/crash, /dev/mem, raw files.
        .target(
            name: "MemorySources",
            dependencies: [
                "ImageFormats",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // The system's zlib (libz.a from zlib1g-dev for the static build), for gzip.
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        // Volatility 3 symbol tables (ISF) from the kernel's BTF, kallsyms or System.map, and banner.
        // Kept free of the pipeline and the network so it fits an acquire-only build.
        .target(
            name: "KernelSymbols",
            dependencies: [
                "CZlib",
                "Hashing",
                "ImageFormats",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // The engine: blocks of memory or of an image turned into LiME or compressed records on
        // all cores, in order, hashed as written, into an `ImageSink`. Knows nothing of symbol
        // tables, manifests or commands.
        .target(
            name: "RecordEngine",
            dependencies: ["ImageFormats", "MemorySources", "Hashing", "CSystemShims"]
        ),
        // How a capture runs over the engine (plan, checks, sources, sink lifecycle, manifest),
        // conversions, verify and info, and the image file: acquire, stream, convert, check.
        .target(
            name: "Capture",
            dependencies: [
                "ImageFormats",
                "MemorySources",
                "KernelSymbols",
                "RecordEngine",
                "CSystemShims",
                "Hashing",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // An image over a plain TCP connection (`stream tcp`): sockets only, no SwiftNIO.
        .target(
            name: "TCPStreaming",
            dependencies: ["ImageFormats", "RecordEngine", .product(name: "SystemPackage", package: "swift-system")]
        ),
        // Sending images over HTTP(S): PUT, Azure Block Blob; retries, proxies, URL redaction.
        .target(
            name: "NetworkSinks",
            dependencies: [
                "ImageFormats",
                "CSystemShims",
                "Capture",
                "RecordEngine",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // The subcommands both binaries share (all but the uploads), `symbols` among them.
        .target(
            name: "AVMLCommands",
            dependencies: [
                "ImageFormats",
                "Capture",
                "RecordEngine",
                "KernelSymbols",
                "MemorySources",
                "TCPStreaming",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "avml",
            dependencies: [
                "AVMLCommands",
                "ImageFormats",
                "Capture",
                "NetworkSinks",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "avml-minimal",
            dependencies: [
                "AVMLCommands",
                "Capture",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Times the Snappy codec for scripts/bench.py (not shipped).
        .executableTarget(name: "avml-bench", dependencies: ["ImageFormats"]),
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "HashingTests", dependencies: ["Hashing"]),
        .testTarget(name: "ImageFormatsTests", dependencies: ["ImageFormats", "TestSupport"]),
        .testTarget(
            name: "MemorySourcesTests",
            dependencies: ["MemorySources", "TestSupport"],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "CaptureTests", dependencies: ["Capture", "RecordEngine", "MemorySources", "KernelSymbols", "TestSupport"]),
        .testTarget(name: "NetworkSinksTests", dependencies: ["NetworkSinks", "Capture"]),
        .testTarget(
            name: "KernelSymbolsTests",
            dependencies: ["KernelSymbols", "CZlib", "TestSupport"],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(name: "TCPStreamingTests", dependencies: ["TCPStreaming"]),
        .testTarget(name: "AVMLCommandsTests", dependencies: ["AVMLCommands", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
