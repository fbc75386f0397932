// swift-tools-version: 6.1
// libFuzzer targets for the readers of untrusted input. Kept out of the main
// package because a fuzz target has no `main` and only links with -sanitize=fuzzer:
//   swift build -c debug --product FuzzReaders --sanitize=fuzzer \
//       -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
import Foundation
import PackageDescription

// A path dependency is named after its folder, which differs between clones.
let mainPackage = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent

let package = Package(
    name: "swift-avml-fuzz",
    dependencies: [.package(path: "..")],
    targets: [
        .executableTarget(
            name: "FuzzReaders",
            dependencies: [
                .product(name: "ImageFormats", package: mainPackage),
                .product(name: "MemorySources", package: mainPackage),
                .product(name: "KernelSymbols", package: mainPackage),
            ]
        )
    ],
    swiftLanguageModes: [.v6]
)
