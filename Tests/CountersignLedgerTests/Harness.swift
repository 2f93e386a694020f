import CountersignConfig
import CountersignVerify
import Crypto
import Foundation
import Logging
import PostgresNIO
@testable import CountersignLedger

/// Where the test PostgreSQL cluster is: environment variables with defaults pointing at the dev
/// environment made by `Deploy/dev/up` (.local/ in this checkout).
///
/// - `COUNTERSIGN_TEST_PG_SOCKET_DIR` (default `.local/pg/run`), `COUNTERSIGN_TEST_PG_PORT` (5432)
/// - `COUNTERSIGN_TEST_PG_SECRETS` (default `.local/secrets`): `pg-superuser-password`,
///   `pg-owner-password`, `pg-writer-password`, `pg-reader-password`
/// - `COUNTERSIGN_TEST_PG_SUPERUSER` (default `postgres`)
enum TestEnvironment {
    static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()
    static let env = ProcessInfo.processInfo.environment
    static let socketDir = env["COUNTERSIGN_TEST_PG_SOCKET_DIR"] ?? "\(root)/.local/pg/run"
    static let port = Int(env["COUNTERSIGN_TEST_PG_PORT"] ?? "") ?? 5432
    static let secrets = env["COUNTERSIGN_TEST_PG_SECRETS"] ?? "\(root)/.local/secrets"
    static let superuser = env["COUNTERSIGN_TEST_PG_SUPERUSER"] ?? "postgres"
    static var logger: Logger {
        var l = Logger(label: "ledger-tests")
        l.logLevel = .error
        return l
    }

    static func settings(database: String) -> DatabaseSettings {
        DatabaseSettings(
            endpoint: .unixSocket(directory: socketDir, port: port), database: database,
            owner: DatabaseCredentials(user: "countersign_owner", password: .file("\(secrets)/pg-owner-password")),
            writer: DatabaseCredentials(user: "countersign_writer", password: .file("\(secrets)/pg-writer-password")),
            reader: DatabaseCredentials(user: "countersign_reader", password: .file("\(secrets)/pg-reader-password")))
    }

    static func superuserSettings(database: String) -> DatabaseSettings {
        DatabaseSettings(endpoint: .unixSocket(directory: socketDir, port: port), database: database,
                         owner: DatabaseCredentials(user: superuser, password: .file("\(secrets)/pg-superuser-password")),
                         writer: DatabaseCredentials(user: superuser, password: .file("\(secrets)/pg-superuser-password")))
    }
}

/// A fresh database for one suite or test: created as superuser (owned by the owner role, public
/// schema closed to writer and reader as Deploy/dev/up does), migrated as the owner, dropped after.
struct TestDatabase: Sendable {
    let name: String
    var settings: DatabaseSettings { TestEnvironment.settings(database: name) }

    static func withFresh<T>(_ body: (TestDatabase) async throws -> T) async throws -> T {
        let db = TestDatabase(name: "cs_test_\(UInt32.random(in: 0...UInt32.max))")
        try await db.superuser(database: "postgres", "CREATE DATABASE \(db.name) OWNER countersign_owner")
        do {
            try await db.superuser("""
                REVOKE ALL ON SCHEMA public FROM PUBLIC; GRANT USAGE ON SCHEMA public TO countersign_writer, countersign_reader;
                REVOKE CREATE ON SCHEMA public FROM countersign_writer, countersign_reader; GRANT ALL ON SCHEMA public TO countersign_owner
                """)
            try await Ledger.migrate(database: db.settings, logger: TestEnvironment.logger)
            let result = try await body(db)
            try? await db.drop()
            return result
        } catch {
            try? await db.drop()
            throw error
        }
    }

    func drop() async throws {
        try await superuser(database: "postgres", "DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }

    /// Runs `;`-separated statements as the superuser.
    func superuser(database: String? = nil, _ sql: String) async throws {
        try await TestDatabase.run(TestEnvironment.superuserSettings(database: database ?? name), .owner, sql)
    }

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

    /// Runs `body` with a writer ledger that is running and holds the lease.
    func withLedger<T>(signer: SoftwareSigner? = nil, settings ledgerSettings: LedgerSettings = LedgerSettings(origin: "test.local/ledger", checkpointIntervalMs: 100_000),
                       holder: String = "test-node", _ body: (Ledger) async throws -> T) async throws -> T {
        let ledger = try Ledger(database: settings, settings: ledgerSettings, signer: signer, logger: TestEnvironment.logger)
        let task = Task { await ledger.run() }
        defer { task.cancel() }
        try await ledger.acquireLease(holder: holder, ttl: .seconds(900))
        return try await body(ledger)
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
