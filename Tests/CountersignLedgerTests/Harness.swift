import CountersignConfig
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

/// A software P-256 signer for tests only (the product signs with the PKCS#11 token).
struct SoftwareSigner: StatementSigner {
    let key: P256.Signing.PrivateKey
    let verificationKey: VerificationKey

    init(key: P256.Signing.PrivateKey = P256.Signing.PrivateKey()) {
        self.key = key
        self.verificationKey = try! VerificationKey(spkiDER: Array(key.publicKey.derRepresentation))
    }

    var activeKeyID: String { verificationKey.keyID }

    func sign(payloadType: String, payload: [UInt8]) async throws -> SignedStatement {
        signNow(payloadType: payloadType, payload: payload)
    }

    func signNow(payloadType: String, payload: [UInt8]) -> SignedStatement {
        let sig = try! key.signature(for: SHA256.hash(data: DSSE.pae(payloadType: payloadType, payload: payload)))
        return SignedStatement(payloadType: payloadType, payload: payload, signature: Array(sig.derRepresentation), keyID: verificationKey.keyID)
    }

    var trusted: TrustedKeys { TrustedKeys([verificationKey]) }

    /// A decision-like entry with a unique statement.
    func entry(_ n: Int, kind: EntryKind = .decision, requestID: String? = nil) -> LedgerEntry {
        let payload = Array("statement \(n) \(UInt64.random(in: 0...UInt64.max))".utf8)
        return LedgerEntry(kind: kind, statement: signNow(payloadType: PayloadType.decision, payload: payload),
                           agent: "orchestrator", owner: "maria.lopez@acmetech.example", requestID: requestID ?? "req-\(n)")
    }
}
