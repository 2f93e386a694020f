public import CountersignConfig
public import CountersignSigner
import Foundation
import Logging

/// The process's test tokens: one SoftHSM configuration under .local/test-tokens/<pid>, with one
/// token per purpose, all created before the module is first initialised (SoftHSM reads
/// SOFTHSM2_CONF and scans its tokens at C_Initialize, once per process).
/// Override the module with COUNTERSIGN_TEST_PKCS11_MODULE.
public final class TestTokens: @unchecked Sendable {
    public static let shared = TestTokens()
    public static let labels = ["cs-test-sign", "cs-test-custody", "cs-test-failsecure", "cs-test-pin", "cs-test-server", "cs-test-ledger"]

    public let root: String
    public let conf: String
    public let tokenDir: String
    public let module: String
    /// Token folder (under tokenDir) of each label.
    public private(set) var folders: [String: String] = [:]
    /// PIN file of each label (the tests may rewrite them).
    public private(set) var pinFiles: [String: String] = [:]
    public let soPIN = "so-pin-1234"

    private init() {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        root = repo.appendingPathComponent(".local/test-tokens/\(getpid())").path
        conf = root + "/softhsm2.conf"
        tokenDir = root + "/tokens"
        module = ProcessInfo.processInfo.environment["COUNTERSIGN_TEST_PKCS11_MODULE"] ?? "/usr/lib/softhsm/libsofthsm2.so"
        let fm = FileManager.default
        try? fm.removeItem(atPath: root)
        try! fm.createDirectory(atPath: tokenDir, withIntermediateDirectories: true)
        try! """
            directories.tokendir = \(tokenDir)
            objectstore.backend = file
            log.level = ERROR
            slots.removable = false

            """.write(toFile: conf, atomically: true, encoding: .utf8)
        for label in Self.labels {
            let before = Set((try? fm.contentsOfDirectory(atPath: tokenDir)) ?? [])
            let pin = "pin-\(label)"
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/softhsm2-util")
            p.arguments = ["--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", soPIN]
            var env = ProcessInfo.processInfo.environment
            env["SOFTHSM2_CONF"] = conf
            p.environment = env
            p.standardOutput = FileHandle.nullDevice
            try! p.run()
            p.waitUntilExit()
            precondition(p.terminationStatus == 0, "softhsm2-util --init-token failed for \(label)")
            let after = Set(try! fm.contentsOfDirectory(atPath: tokenDir))
            folders[label] = after.subtracting(before).first!
            let pinFile = root + "/\(label).pin"
            try! pin.write(toFile: pinFile, atomically: true, encoding: .utf8)
            pinFiles[label] = pinFile
        }
    }

    public func settings(_ label: String, sessions: Int = 2, keyAlgorithm: KeyAlgorithm = .ecdsaP256,
                  rotationDays: Int = 90, proposalTTLSeconds: Int = 3600) -> TokenSettings {
        TokenSettings(modulePath: module, softHSM2ConfPath: conf, tokenLabel: label, pin: .file(pinFiles[label]!),
                      keyAlgorithm: keyAlgorithm, sessions: sessions, rotationDays: rotationDays,
                      proposalTTLSeconds: proposalTTLSeconds)
    }

    /// Quick recovery, so that fail-secure tests do not wait long.
    public static let options = SignerOptions(initialBackoffSeconds: 0.05, maximumBackoffSeconds: 0.4, probeIntervalSeconds: 0.2)

    public func signer(_ label: String, sessions: Int = 2, options: SignerOptions = TestTokens.options) throws -> TokenSigner {
        var logger = Logger(label: "test.signer")
        logger.logLevel = .warning
        return try TokenSigner(settings: settings(label, sessions: sessions), options: options, logger: logger)
    }

    /// Generates a key pair in `signer`'s token, one generation at a time in this process: SoftHSM
    /// answers CKR_TEMPLATE_INCONSISTENT now and then when suites running in parallel generate keys
    /// in the same token through different signers (the product generates through one custodian,
    /// one operation at a time).
    public static func generateKey(on signer: TokenSigner, algorithm: KeyAlgorithm = .ecdsaP256) async throws -> TokenKey {
        try await Turns.shared.inTurn("key generation") { try await signer.generateKey(algorithm: algorithm) }
    }

    public func folderPath(_ label: String) -> String { tokenDir + "/" + folders[label]! }
}

/// A clock the tests move by hand.
public final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Int64
    public init(_ start: Int64 = 1_800_000_000_000) { value = start }
    public var now: Int64 { lock.lock(); defer { lock.unlock() }; return value }
    public func advance(seconds: Int64) { lock.lock(); value += seconds * 1000; lock.unlock() }
    public func advance(days: Int64) { advance(seconds: days * 86_400) }
    public var clock: KeyCustodian.Clock { { [self] in now } }
}


extension TestTokens {
    /// Runs `body` while no other test of this process uses the token `label`.
    ///
    /// A node has one signer; tests that each make their own on a shared token must take turns.
    /// SoftHSM ties a token object's handle to the session that made it, and logs a token out when
    /// its last session closes, so two signers with overlapping lives on one token invalidate each
    /// other's keys (`CKR_OBJECT_HANDLE_INVALID`), and the signer that sees it re-initialises the
    /// process's one module under every other signer (`CKR_SESSION_HANDLE_INVALID`).
    public static func withExclusiveUse<T>(of label: String, _ body: () async throws -> T) async throws -> T {
        try await Turns.shared.inTurn("token " + label, body)
    }
}

/// Bodies that take turns by key: one at a time per key, in arrival order, across suspension points.
actor Turns {
    static let shared = Turns()
    /// For each key in use, who waits for it.
    private var waiting: [String: [CheckedContinuation<Void, Never>]] = [:]

    /// Runs `body` when no other body holds `key`.
    nonisolated func inTurn<T>(_ key: String, _ body: () async throws -> T) async throws -> T {
        await acquire(key)
        do {
            let result = try await body()
            await release(key)
            return result
        } catch {
            await release(key)
            throw error
        }
    }

    private func acquire(_ key: String) async {
        guard waiting[key] != nil else {
            waiting[key] = []
            return
        }
        await withCheckedContinuation { waiting[key]!.append($0) }
    }

    private func release(_ key: String) {
        guard var queue = waiting[key], !queue.isEmpty else {
            waiting[key] = nil
            return
        }
        let next = queue.removeFirst()
        waiting[key] = queue
        next.resume()  // the key passes straight to the next body
    }
}
