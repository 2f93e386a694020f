public import CountersignConfig
public import Logging
import PostgresNIO

extension Ledger {
    /// Applies the missing schema migrations as the owner role (`database.owner`), each in its own
    /// transaction, under an advisory lock so that two nodes cannot migrate at once.
    /// - Returns: the versions applied now (empty when the schema was current).
    /// - Throws: ``LedgerError``: `schema` when the database is newer than this program,
    ///   `unavailable` when it cannot be reached.
    @discardableResult
    public static func migrate(database: DatabaseSettings, timeout: Duration = .seconds(30), logger: Logger) async throws -> [Int] {
        let writer = database.writer.user
        let reader = database.reader?.user ?? database.writer.user
        let migrations = Schema.migrations(writer: writer, reader: reader)
        let connection = try await Database.connect(database, .owner, timeout: timeout, logger: logger)
        do {
            let applied = try await bounded("migrating", timeout: timeout, onTimeout: { connection.closeNow() }) {
                try await connection.query("SELECT pg_advisory_lock(7406251)", logger: logger)
                try await connection.query(PostgresQuery(unsafeSQL: Schema.createMigrationsTable), logger: logger)
                var have = Set<Int>()
                for try await (v,) in try await connection.query("SELECT version FROM schema_migrations", logger: logger).decode((Int32,).self) {
                    have.insert(Int(v))
                }
                if let newest = have.max(), newest > (migrations.map(\.version).max() ?? 0) {
                    throw LedgerError(.schema, "the database schema version \(newest) is newer than this program knows")
                }
                var done: [Int] = []
                for m in migrations where !have.contains(m.version) {
                    try await connection.query("BEGIN", logger: logger)
                    do {
                        for statement in Schema.statements(m.sql) {
                            try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                        }
                        let v = Int32(m.version), name = m.name
                        try await connection.query("INSERT INTO schema_migrations (version, name) VALUES (\(v), \(name))", logger: logger)
                        try await connection.query("COMMIT", logger: logger)
                    } catch {
                        _ = try? await connection.query("ROLLBACK", logger: logger)
                        throw error
                    }
                    logger.info("ledger migration applied", metadata: ["cs.migration": "\(m.version)"])
                    done.append(m.version)
                }
                try await connection.query("SELECT pg_advisory_unlock(7406251)", logger: logger)
                return done
            }
            try? await connection.close()
            return applied
        } catch {
            try? await connection.close()
            throw Database.map(error, "migrating the ledger schema")
        }
    }
}

extension Schema {
    /// Splits a migration into statements at `;` ending a line, outside `$$` function bodies, and
    /// drops comment-only lines (the extended query protocol takes one statement at a time).
    static func statements(_ sql: String) -> [String] {
        var out: [String] = []
        var current = ""
        var inBody = false
        for line in sql.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if !inBody && (trimmed.hasPrefix("--") || trimmed.isEmpty) { continue }
            current += line + "\n"
            let dollars = line.components(separatedBy: "$$").count - 1
            if dollars % 2 == 1 { inBody.toggle() }
            if !inBody && trimmed.hasSuffix(";") {
                out.append(current.trimmingCharacters(in: .whitespacesAndNewlines))
                current = ""
            }
        }
        let rest = current.trimmingCharacters(in: .whitespacesAndNewlines)
        if !rest.isEmpty { out.append(rest) }
        return out
    }
}
