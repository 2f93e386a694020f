import ArgumentParser
import CountersignConfig
import CountersignSigner
import CountersignVerify
import Foundation
import Logging

/// `countersign bench sign`: signatures per second through the Swift signer beside a raw C loop.
struct BenchSign: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sign",
        abstract: "Signatures/s through the Swift signer (1 and 2 threads, both algorithms) beside a raw C loop on the same token.",
        discussion: """
            For each algorithm and thread count it measures:
              raw    a tight C loop of C_SignInit + C_Sign over a fixed SHA-256 digest (cs_p11_bench in CPKCS11),
                     one pthread per session;
              swift  TokenSigner.sign: DSSE PAE, SHA-256, the pool of logged-in sessions on their own threads,
                     ECDSA r||s to DER, from many concurrent async callers.
            The ratio swift/raw is the signer's overhead (target: at least 0.90). Benchmark keys are made once
            in the configured token (labels countersign-bench-*) and are not part of the keyring. Build with
            -c release (make bench-sign) for meaningful figures.
            """)

    @OptionGroup var config: ConfigOption
    @Option(help: "Seconds per measurement.") var seconds: Double = 3
    @Option(help: "ecdsa-p256, rsa-pss-4096 or all.") var algorithm: String = "all"
    @Option(help: "Thread (session) counts to measure, comma separated.") var threads: String = "1,2"
    @Option(help: "Alternating raw/Swift rounds per line; the best of each is shown.") var rounds: Int = 3
    @Flag(help: .hidden) var exitWhileSigning = false

    func run() async throws {
        let configuration = try CountersignConfiguration.load(path: try config.resolvedPath())
        let algorithms: [KeyAlgorithm] = algorithm == "all" ? KeyAlgorithm.allCases : try [KeyAlgorithm(rawValue: algorithm) ?? {
            throw ValidationError("unknown algorithm \(algorithm)")
        }()]
        let threadCounts = threads.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        var logger = Logger(label: "countersign.bench")
        logger.logLevel = .error

        print("token \(configuration.token.tokenLabel), \(seconds) s per measurement, \(ProcessInfo.processInfo.activeProcessorCount) cores")
        print("best of \(rounds) alternating rounds; CPU = user+system CPU time of this process per signature")
        print("algorithm      threads   raw sig/s   swift sig/s   swift/raw   raw CPU µs   swift CPU µs   raw/swift")
        for algo in algorithms {
            let label = "countersign-bench-\(algo.rawValue)"
            for n in threadCounts {
                var settings = configuration.token
                settings.sessions = n
                let signer = try TokenSigner(settings: settings, logger: logger)
                defer { signer.shutdown() }
                let availability = await signer.waitUntilAvailable(timeoutSeconds: 5)
                guard availability.isAvailable else { throw ValidationError("token \(availability)") }
                let key: TokenKey
                if let existing = signer.tokenKeys.first(where: { $0.label == label && $0.algorithm == algo }) {
                    key = existing
                } else {
                    key = try await signer.generateKey(algorithm: algo, label: label)
                }
                // Warm up, and check that the signatures verify.
                let check = try await signer.sign(payloadType: PayloadType.decision, payload: [1, 2, 3], keyID: key.keyID)
                try VerificationKey(spkiDER: key.spkiDER).verify(check)
                if exitWhileSigning { await Self.exitWhileSigning(signer: signer, keyID: key.keyID) }

                // Alternate raw and Swift rounds and keep the best of each: other load on the
                // machine (builds) then hits both alike. CPU time per signature (user + system, of
                // this process) is reported too: it does not depend on how busy the machine is.
                var rawBest = 0.0, swiftBest = 0.0
                var rawCPU = Double.infinity, swiftCPU = Double.infinity
                for _ in 0..<rounds {
                    let c0 = Self.cpuSeconds()
                    let raw = try await signer._rawSigningBaseline(keyID: key.keyID, threads: n, seconds: seconds)
                    let c1 = Self.cpuSeconds()
                    let swift = try await Self.measure(signer: signer, keyID: key.keyID, callers: 128, seconds: seconds)
                    let c2 = Self.cpuSeconds()
                    rawBest = max(rawBest, Double(raw.signatures) / raw.seconds)
                    swiftBest = max(swiftBest, swift.rate)
                    rawCPU = min(rawCPU, (c1 - c0) / Double(max(1, raw.signatures)))
                    swiftCPU = min(swiftCPU, (c2 - c1) / Double(max(1, swift.count)))
                }
                let line = [
                    algo.rawValue.padding(toLength: 14, withPad: " ", startingAt: 0),
                    String(n).leftPad(7),
                    String(format: "%.0f", rawBest).leftPad(11),
                    String(format: "%.0f", swiftBest).leftPad(13),
                    String(format: "%.2f", swiftBest / rawBest).leftPad(11),
                    String(format: "%.1f", rawCPU * 1e6).leftPad(12),
                    String(format: "%.1f", swiftCPU * 1e6).leftPad(14),
                    String(format: "%.2f", rawCPU / swiftCPU).leftPad(11),
                ].joined(separator: " ")
                print(line)
            }
        }
    }

    /// Signatures per second from `callers` concurrent tasks signing distinct payloads for `seconds`.
    static func measure(signer: TokenSigner, keyID: String, callers: Int, seconds: Double) async throws -> (rate: Double, count: Int) {
        let start = DispatchTime.now().uptimeNanoseconds
        let end = start + UInt64(seconds * 1e9)
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            for c in 0..<callers {
                group.addTask {
                    var count = 0
                    var payload = Array("decision statement \(c) ".utf8) + [0, 0, 0, 0]
                    while DispatchTime.now().uptimeNanoseconds < end {
                        payload[payload.count - 1] &+= 1
                        _ = try await signer.sign(payloadType: PayloadType.decision, payload: payload, keyID: keyID)
                        count += 1
                    }
                    return count
                }
            }
            return try await group.reduce(0, +)
        }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return (Double(total) / elapsed, total)
    }

    /// The test of the PKCS#11 exit gate (`CPKCS11/gate.c`, `scripts/integration/signer-exit.sh`):
    /// calls `exit(0)` while callers and the raw C loop are inside the token. Without the gate,
    /// SoftHSM's and OpenSSL's exit-time teardown runs under their feet and the process crashes
    /// more often than not; with it, it exits 0.
    static func exitWhileSigning(signer: TokenSigner, keyID: String) async -> Never {
        let signed = Counter()
        for c in 0..<32 {
            Task.detached {
                var payload = Array("exit test \(c) ".utf8) + [0, 0, 0, 0]
                while true {
                    payload[payload.count - 1] &+= 1
                    _ = try? await signer.sign(payloadType: PayloadType.decision, payload: payload, keyID: keyID)
                    signed.add(1)
                }
            }
        }
        Task.detached { _ = try? await signer._rawSigningBaseline(keyID: keyID, threads: 2, seconds: 60) }
        while signed.value < 200 { try? await Task.sleep(nanoseconds: 1_000_000) }
        print("exiting while signing (\(signed.value) signatures made)")
        Glibc.exit(0)
    }

    /// User + system CPU seconds of this process so far.
    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
    }
}

extension String {
    fileprivate func leftPad(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
