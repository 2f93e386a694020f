import CountersignConfig
import CountersignSigner
import CountersignTestSupport
import CountersignVerify
import Crypto
import Foundation
import Logging
import PostgresNIO
@testable import CountersignLedger

// TestEnvironment and TestDatabase come from CountersignTestSupport (shared with the server tests).

extension TestDatabase {
    /// Runs `;`-separated statements as `role` (owner/writer/reader of the test settings).
    func run(as role: DatabaseRole, _ sql: String) async throws {
        try await TestDatabase.run(settings, role, sql)
    }

    static func run(_ settings: DatabaseSettings, _ role: DatabaseRole, _ sql: String) async throws {
        let c = try await Database.connect(settings, role, timeout: .seconds(10), logger: TestEnvironment.logger)
        do {
            for s in sql.split(separator: ";") where !s.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                try await c.query(PostgresQuery(unsafeSQL: String(s)), logger: TestEnvironment.logger)
            }
            try await c.close()
        } catch {
            try? await c.close()
            throw error
        }
    }

    /// Appends 64 entries signed by `signer`, with a signed checkpoint after every 8 (the ledger of
    /// the tamper and export suites), and returns the newest checkpoint.
    func fillWithCheckpoints(signer: TokenTestSigner) async throws -> StoredCheckpoint {
        try await withLedger(signer: signer) { ledger in
            for n in 0..<64 {
                _ = try await ledger.append(try await signer.entry(n))
                if (n + 1) % 8 == 0 { try await ledger.checkpoint() }
            }
            return try await ledger.getCheckpoint()
        }
    }

    /// Writes `ledger export` of this database to a new file at `path`.
    func export(to path: String) async throws {
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        guard let handle = FileHandle(forWritingAtPath: path) else { throw CocoaError(.fileWriteUnknown) }
        defer { try? handle.close() }
        _ = try await LedgerAudit.export(database: settings, to: handle, logger: TestEnvironment.logger)
    }
}

/// The ledger's signer in these suites: a key pair generated for one test inside the SoftHSM test
/// token "cs-test-ledger" and used through the PKCS#11 ``TokenSigner`` (the product signs with its
/// token). It signs the entries' statements and, given to the ledger as its signer, its checkpoints.
struct TokenTestSigner: StatementSigner {
    static let tokenLabel = "cs-test-ledger"

    let token: TokenSigner
    let key: TokenKey
    let verificationKey: VerificationKey

    init(token: TokenSigner, key: TokenKey) throws {
        self.token = token
        self.key = key
        self.verificationKey = try VerificationKey(spkiDER: key.spkiDER)
    }

    /// Runs `body` with a new key in the test token.
    static func with<T>(_ body: (TokenTestSigner) async throws -> T) async throws -> T {
        let token = try await LedgerTestToken.shared.acquire()
        do {
            let result = try await body(TokenTestSigner(token: token, key: try await LedgerTestToken.shared.generateKey()))
            await LedgerTestToken.shared.release()
            return result
        } catch {
            await LedgerTestToken.shared.release()
            throw error
        }
    }

    /// Another key generated in the same token.
    func newKey() async throws -> TokenTestSigner {
        try TokenTestSigner(token: token, key: try await LedgerTestToken.shared.generateKey())
    }

    var activeKeyID: String { key.keyID }
    var keyID: String { key.keyID }
    var trusted: TrustedKeys { TrustedKeys([verificationKey]) }

    /// Signs in the token with this key.
    func sign(payloadType: String, payload: [UInt8]) async throws -> SignedStatement {
        try await token.sign(payloadType: payloadType, payload: payload, keyID: key.keyID)
    }

    func sign(payloadType: String, payload: [UInt8], keyID: String) async throws -> SignedStatement {
        try await token.sign(payloadType: payloadType, payload: payload, keyID: keyID)
    }

    /// A decision-like entry with a unique statement, signed in the token.
    func entry(_ n: Int, kind: EntryKind = .decision, requestID: String? = nil) async throws -> LedgerEntry {
        let payload = Array("statement \(n) \(UInt64.random(in: 0...UInt64.max))".utf8)
        return LedgerEntry(kind: kind, statement: try await sign(payloadType: PayloadType.decision, payload: payload),
                           agent: "orchestrator", owner: "maria.lopez@acmetech.example", requestID: requestID ?? "req-\(n)")
    }
}

/// The one ``TokenSigner`` on "cs-test-ledger" of the test process, as a node has one: the ledger
/// suites run in parallel and share it, and the last one out shuts it down. (With a signer per
/// test, a run crashed: SoftHSM refused a key generation made at the same moment through another
/// signer, and the signer that saw it re-initialised the process's one PKCS#11 module under
/// everyone else's sessions.) Keys are generated through `TestTokens.generateKey(on:)`, one at a
/// time in the process.
actor LedgerTestToken {
    static let shared = LedgerTestToken()

    private var signer: TokenSigner?
    private var users = 0

    func acquire() throws -> TokenSigner {
        if let signer {
            users += 1
            return signer
        }
        let s = try TestTokens.shared.signer(TokenTestSigner.tokenLabel, sessions: 4)
        signer = s
        users = 1
        return s
    }

    func release() {
        users -= 1
        if users == 0, let s = signer {
            signer = nil
            s.shutdown()
        }
    }

    /// A new P-256 key pair in the token.
    func generateKey() async throws -> TokenKey {
        guard let signer else { throw SignerError(.unavailable, "acquire the test token first") }
        return try await TestTokens.generateKey(on: signer)
    }
}

/// A P-256 key in memory, for a party that is *not* Countersign and whose key the token must not
/// hold: an attacker forging rows and checkpoints in the tamper matrix, "mallory" introducing her
/// own key. Never the ledger's signer.
struct OutsideKey: Sendable {
    let key = P256.Signing.PrivateKey()
    var verificationKey: VerificationKey { try! VerificationKey(spkiDER: Array(key.publicKey.derRepresentation)) }

    func sign(payloadType: String, payload: [UInt8]) -> SignedStatement {
        let sig = try! key.signature(for: SHA256.hash(data: DSSE.pae(payloadType: payloadType, payload: payload)))
        return SignedStatement(payloadType: payloadType, payload: payload, signature: Array(sig.derRepresentation), keyID: verificationKey.keyID)
    }
}
