public import CountersignConfig
public import CountersignLedger
public import CountersignVerify
import Foundation
public import Logging
import PostgresNIO

/// Where the test PostgreSQL cluster is: environment variables with defaults pointing at the dev
/// environment made by `Deploy/dev/up` (.local/ in this checkout).
///
/// - `COUNTERSIGN_TEST_PG_SOCKET_DIR` (default `.local/pg/run`), `COUNTERSIGN_TEST_PG_PORT` (5432)
/// - `COUNTERSIGN_TEST_PG_SECRETS` (default `.local/secrets`): `pg-superuser-password`,
///   `pg-owner-password`, `pg-writer-password`, `pg-reader-password`
/// - `COUNTERSIGN_TEST_PG_SUPERUSER` (default `postgres`)
public enum TestEnvironment {
    /// The checkout.
    public static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()
    static let env = ProcessInfo.processInfo.environment
    public static let socketDir = env["COUNTERSIGN_TEST_PG_SOCKET_DIR"] ?? "\(root)/.local/pg/run"
    public static let port = Int(env["COUNTERSIGN_TEST_PG_PORT"] ?? "") ?? 5432
    public static let secrets = env["COUNTERSIGN_TEST_PG_SECRETS"] ?? "\(root)/.local/secrets"
    public static let superuser = env["COUNTERSIGN_TEST_PG_SUPERUSER"] ?? "postgres"

    /// Whether the suites that break a SoftHSM token on purpose may run in this process.
    ///
    /// SoftHSM is one PKCS#11 module per process, and those suites make their signer re-initialise
    /// it: every other suite's signer in the same process would lose its sessions mid-test. So they
    /// run only in a process of their own, which says so with `COUNTERSIGN_TEST_TOKEN_BREAKING=1`
    /// (scripts/test does, once per suite); a plain `swift test` skips them and says why.
    public static let runsTokenBreakingSuites = env["COUNTERSIGN_TEST_TOKEN_BREAKING"] == "1"

    public static var logger: Logger {
        var l = Logger(label: "tests")
        l.logLevel = .error
        return l
    }

    /// The owner, writer and reader logins of `database` in the test cluster.
    public static func settings(database: String) -> DatabaseSettings {
        DatabaseSettings(
            endpoint: .unixSocket(directory: socketDir, port: port), database: database,
            owner: DatabaseCredentials(user: "countersign_owner", password: .file("\(secrets)/pg-owner-password")),
            writer: DatabaseCredentials(user: "countersign_writer", password: .file("\(secrets)/pg-writer-password")),
            reader: DatabaseCredentials(user: "countersign_reader", password: .file("\(secrets)/pg-reader-password")))
    }

    /// The dev environment's configuration file (`COUNTERSIGN_CONFIG`, default `.local/countersign.yaml`).
    public static var configPath: String {
        if let path = env["COUNTERSIGN_CONFIG"], !path.isEmpty { return path }
        return "\(root)/.local/countersign.yaml"
    }

    /// A file of the dev PKI beside the configuration (`pki/NAME`).
    public static func pki(_ name: String) -> String {
        URL(fileURLWithPath: configPath).deletingLastPathComponent().appendingPathComponent("pki/\(name)").path
    }
}

/// A fresh database for one suite or test: created as superuser (owned by the owner role, public
/// schema closed to writer and reader as Deploy/dev/up does), migrated as the owner, dropped after.
public struct TestDatabase: Sendable {
    public let name: String
    public var settings: DatabaseSettings { TestEnvironment.settings(database: name) }

    public static func withFresh<T>(_ body: (TestDatabase) async throws -> T) async throws -> T {
        let db = TestDatabase(name: "cs_test_\(UInt32.random(in: 0...UInt32.max))")
        try await db.superuser(database: "postgres", "CREATE DATABASE \(db.name) OWNER countersign_owner")
        do {
            try await db.superuser("""
                REVOKE ALL ON SCHEMA public FROM PUBLIC; GRANT USAGE ON SCHEMA public TO countersign_writer, countersign_reader;
                REVOKE CREATE ON SCHEMA public FROM countersign_writer, countersign_reader; GRANT ALL ON SCHEMA public TO countersign_owner
                """)
            _ = try await Ledger.migrate(database: db.settings, logger: TestEnvironment.logger)
            let result = try await body(db)
            try? await db.drop()
            return result
        } catch {
            try? await db.drop()
            throw error
        }
    }

    public func drop() async throws {
        try await superuser(database: "postgres", "DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }

    /// Runs `;`-separated statements as the superuser (in this database, or in `database`).
    public func superuser(database: String? = nil, _ sql: String) async throws {
        try await superuser(database: database, statements: sql.split(separator: ";").map(String.init))
    }

    /// Runs `statements` in order as the superuser (for statements with `;` inside, such as a
    /// function's body).
    public func superuser(database: String? = nil, statements: [String]) async throws {
        let password = try SecretSource.file("\(TestEnvironment.secrets)/pg-superuser-password").read()
        var config = PostgresConnection.Configuration(
            unixSocketPath: "\(TestEnvironment.socketDir)/.s.PGSQL.\(TestEnvironment.port)",
            username: TestEnvironment.superuser, password: password, database: database ?? name)
        config.options.connectTimeout = .seconds(10)
        let connection = try await PostgresConnection.connect(configuration: config, id: 1, logger: TestEnvironment.logger)
        do {
            for s in statements where !s.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                try await connection.query(PostgresQuery(unsafeSQL: s), logger: TestEnvironment.logger)
            }
            try await connection.close()
        } catch {
            try? await connection.close()
            throw error
        }
    }

    /// Runs `body` with a writer ledger that is running and holds the lease.
    public func withLedger<T>(signer: (any StatementSigner)? = nil, settings ledgerSettings: LedgerSettings = LedgerSettings(origin: "test.local/ledger", checkpointIntervalMs: 100_000),
                              holder: String = "test-node", _ body: (Ledger) async throws -> T) async throws -> T {
        let ledger = try Ledger(database: settings, settings: ledgerSettings, signer: signer, logger: TestEnvironment.logger)
        let task = Task { await ledger.run() }
        defer { task.cancel() }
        try await ledger.acquireLease(holder: holder, ttl: .seconds(900))
        return try await body(ledger)
    }

    /// Runs `body` with two ledgers on this database, running and without a lease: the two nodes
    /// of an active/standby pair.
    public func withTwoNodes<T>(_ body: (Ledger, Ledger) async throws -> T) async throws -> T {
        let a = try Ledger(database: settings, logger: TestEnvironment.logger)
        let b = try Ledger(database: settings, logger: TestEnvironment.logger)
        let ta = Task { await a.run() }
        let tb = Task { await b.run() }
        defer { ta.cancel(); tb.cancel() }
        return try await body(a, b)
    }
}
