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
}

/// The ledger's signer in these suites: the PKCS#11 ``TokenSigner`` on the SoftHSM test token
/// "cs-test-ledger", as the product signs with its token, holding a P-256 key generated inside the
/// token for one test. It signs the entries' statements and, as the ledger's signer, its checkpoints.
struct TokenTestSigner: Sendable {
    static let tokenLabel = "cs-test-ledger"

    let token: TokenSigner
    let key: TokenKey
    let verificationKey: VerificationKey

    init(token: TokenSigner, key: TokenKey) throws {
        self.token = token
        self.key = key
        self.verificationKey = try VerificationKey(spkiDER: key.spkiDER)
    }

    /// Runs `body` with a signer on the test token and a new key in it (the active key, so the
    /// ledger's checkpoints are signed with it too); shuts the signer down afterwards.
    static func with<T>(sessions: Int = 2, _ body: (TokenTestSigner) async throws -> T) async throws -> T {
        let (token, key) = try await TestTokens.shared.signerWithNewKey(tokenLabel, sessions: sessions)
        // A signer left running keeps probing (and, on a failure, re-initialising) the process's one module.
        defer { token.shutdown() }
        return try await body(TokenTestSigner(token: token, key: key))
    }

    /// Another key generated in the same token (not made active).
    func newKey() async throws -> TokenTestSigner {
        try TokenTestSigner(token: token, key: try await TestTokens.generateKey(on: token))
    }

    var keyID: String { key.keyID }
    var trusted: TrustedKeys { TrustedKeys([verificationKey]) }

    /// Signs in the token with this key (whichever key is active).
    func sign(payloadType: String, payload: [UInt8]) async throws -> SignedStatement {
        try await token.sign(payloadType: payloadType, payload: payload, keyID: key.keyID)
    }

    /// A decision-like entry with a unique statement, signed in the token.
    func entry(_ n: Int, kind: EntryKind = .decision, requestID: String? = nil) async throws -> LedgerEntry {
        let payload = Array("statement \(n) \(UInt64.random(in: 0...UInt64.max))".utf8)
        return LedgerEntry(kind: kind, statement: try await sign(payloadType: PayloadType.decision, payload: payload),
                           agent: "orchestrator", owner: "maria.lopez@acmetech.example", requestID: requestID ?? "req-\(n)")
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
