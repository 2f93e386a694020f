// swift-tools-version:6.0
import PackageDescription

// Module cut (see README "Layout"):
//   CountersignConfig  the YAML configuration file mapped onto value types
//   CountersignWire    framing + hand-written protobuf codec + messages (no crypto, no database)
//   CountersignPolicy  pure plan model, rules, intent check, explanations (no I/O)
//   CountersignVerify  pure verification: DSSE PAE, signatures, RFC 6962, checkpoints
//   CPKCS11            C shim over the system pkcs11.h, loading a module with dlopen
//   CountersignSigner  PKCS#11 token access, DSSE signing, keyring and rotation
//   CLibPQ             the system libpq (libpq-dev), for the ledger writer's connection
//   CountersignLedger  PostgreSQL schema, append, Merkle tree, proofs, verification
//   CountersignServer  NIO pipeline, mTLS + pins, auth, dispatch, configuration
//   CountersignClient  async client for orchestrators, approvers, officers and auditors
//   countersign        the command line (serve, plan, ledger, keys, override, drill, bench, demo)

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "countersign",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "countersign", targets: ["countersign"]),
        .library(name: "CountersignClient", targets: ["CountersignClient"]),
        .library(name: "CountersignVerify", targets: ["CountersignVerify"]),
        .library(name: "CountersignPolicy", targets: ["CountersignPolicy"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
    ],
    targets: [
        .target(
            name: "CountersignRandom",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "CountersignWire",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "CountersignConfig",
            dependencies: [
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "CountersignPolicy",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "CountersignVerify",
            dependencies: [
                "CountersignWire",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "CPKCS11",
            cSettings: [.unsafeFlags(["-I/usr/include/p11-kit-1"])],
            linkerSettings: [.linkedLibrary("dl")]
        ),
        .target(
            name: "CountersignSigner",
            dependencies: [
                "CountersignConfig",
                "CPKCS11",
                "CountersignWire",
                "CountersignVerify",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .systemLibrary(
            name: "CLibPQ",
            path: "Sources/CLibPQ"
        ),
        .target(
            name: "CountersignLedger",
            dependencies: [
                "CLibPQ",
                "CountersignConfig",
                "CountersignWire",
                "CountersignVerify",
                "CountersignSigner",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "CountersignServer",
            dependencies: [
                "CountersignConfig",
                "CountersignWire",
                "CountersignPolicy",
                "CountersignVerify",
                "CountersignSigner",
                "CountersignLedger",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "CountersignClient",
            dependencies: [
                "CountersignWire",
                "CountersignVerify",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "countersign",
            dependencies: [
                "CountersignConfig",
                "CountersignWire",
                "CountersignPolicy",
                "CountersignVerify",
                "CountersignSigner",
                "CountersignLedger",
                "CountersignServer",
                "CountersignClient",
                "CountersignRandom",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings,
            // jemalloc (libjemalloc-dev) in place of glibc's malloc, for the whole process: the
            // node allocates and frees on several threads at once for every decision, where glibc
            // spends about a tenth of the node's CPU (docs/performance.md, tenth session).
            linkerSettings: [.linkedLibrary("jemalloc", .when(platforms: [.linux]))]
        ),
        .target(
            name: "CountersignTestSupport",
            dependencies: [
                "CountersignConfig", "CountersignSigner", "CountersignLedger", "CountersignVerify",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/CountersignTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CountersignWireTests",
            dependencies: ["CountersignWire", "CountersignRandom", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio")],
            resources: [.copy("Vectors")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CountersignConfigTests",
            dependencies: ["CountersignConfig"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CountersignPolicyTests",
            dependencies: ["CountersignPolicy", "CountersignRandom"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CountersignVerifyTests",
            dependencies: ["CountersignVerify", "CountersignTestSupport", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CountersignSignerTests",
            dependencies: ["CountersignSigner", "CountersignVerify", "CPKCS11", "CountersignTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CountersignLedgerTests",
            dependencies: ["CountersignLedger", "CountersignVerify", "CountersignSigner", "CountersignTestSupport",
                           .product(name: "PostgresNIO", package: "postgres-nio")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CountersignServerTests",
            dependencies: [
                "countersign", "CountersignServer", "CountersignClient", "CountersignWire", "CountersignTestSupport",
                "CountersignSigner", "CountersignLedger", "CountersignPolicy", "CountersignVerify", "CountersignConfig",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
