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

    func run() async throws {
        let configuration = try CountersignConfiguration.load(path: try config.resolvedPath())
        let algorithms: [KeyAlgorithm] = algorithm == "all" ? KeyAlgorithm.allCases : try [KeyAlgorithm(rawValue: algorithm) ?? {
            throw ValidationError("unknown algorithm \(algorithm)")
        }()]
        let threadCounts = threads.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        var logger = Logger(label: "countersign.bench")
        logger.logLevel = .error

        print("token \(configuration.token.tokenLabel), \(seconds) s per measurement, \(ProcessInfo.processInfo.activeProcessorCount) cores")
        print("algorithm      threads   raw sig/s   swift sig/s   swift/raw")
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

                let raw = try await signer._rawSigningBaseline(keyID: key.keyID, threads: n, seconds: seconds)
                let rawRate = Double(raw.signatures) / raw.seconds
                let swiftRate = try await Self.measure(signer: signer, keyID: key.keyID, callers: max(8, n * 16), seconds: seconds)
                let line = [
                    algo.rawValue.padding(toLength: 14, withPad: " ", startingAt: 0),
                    String(n).leftPad(7),
                    String(format: "%.0f", rawRate).leftPad(11),
                    String(format: "%.0f", swiftRate).leftPad(13),
                    String(format: "%.2f", swiftRate / rawRate).leftPad(11),
                ].joined(separator: " ")
                print(line)
            }
        }
    }

    /// Signatures per second from `callers` concurrent tasks signing distinct payloads for `seconds`.
    static func measure(signer: TokenSigner, keyID: String, callers: Int, seconds: Double) async throws -> Double {
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
        return Double(total) / elapsed
    }
}

extension String {
    fileprivate func leftPad(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
