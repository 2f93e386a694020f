public import CountersignConfig
public import CountersignVerify
public import Foundation
public import Logging
import NIOCore
import PostgresNIO

/// The outcome of verifying a whole ledger.
public struct VerificationReport: Sendable {
    public var entries: UInt64
    public var checkpoints: Int
    public var storedNodes: Int
    public var root: [UInt8]
    /// The keys trusted at the end (given ones and those followed through key events).
    public var trustedKeyIDs: [String]
    /// The first problem; `nil` when the ledger verified.
    public var problem: LedgerProblem?
}

/// Whole-ledger reads for auditors: verification from the database and export to a file.
public enum LedgerAudit {
    /// Entries read per round trip.
    static let pageSize = 20_000

    /// Verifies the ledger in the database in one consistent snapshot (REPEATABLE READ, read
    /// only), normally with the reader login. Checks the stored subtree hashes as well.
    /// - Parameter progress: called after each page with (entries checked, entries in total).
    /// - Throws: ``LedgerError`` when the database cannot be read (a tampered ledger is not an
    ///   error: it is the report's `problem`).
    public static func verifyDatabase(database: DatabaseSettings, role: DatabaseRole = .reader, trustedKeys: TrustedKeys,
                                      origin: String?, timeout: Duration = .seconds(60), logger: Logger,
                                      progress: @Sendable (UInt64, UInt64) -> Void = { _, _ in }) async throws -> VerificationReport {
        let connection = try await Database.connect(database, role, timeout: timeout, logger: logger)
        defer { Task { [connection] in try? await connection.close() } }
        do {
            try await connection.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
            try await connection.query("SET LOCAL statement_timeout TO 0", logger: logger)
            var total: Int64 = 0
            for try await (n,) in try await connection.query("SELECT count(*) FROM entries", logger: logger).decode((Int64,).self) { total = n }
            var verifier = LedgerVerifier(trustedKeys: trustedKeys, origin: origin)
            // Checkpoints first (they are few), queued by size.
            let cps = try await connection.query("""
                SELECT body, tree_size, root_hash, payload_type, signature, key_id, epoch FROM checkpoints ORDER BY tree_size
                """, logger: logger)
            for try await (b, n, r, t, s, k, e) in cps.decode((ByteBuffer, Int64, ByteBuffer, String, ByteBuffer, String, Int64).self) {
                verifier.add(checkpoint: StoredCheckpoint(body: b.bytes, treeSize: UInt64(n), rootHash: r.bytes, payloadType: t,
                                                          signature: s.bytes, keyID: k, epoch: UInt64(e)))
            }
            // Double buffering: the next page is read and decoded while this one is checked.
            var current = try await fetchPage(connection, from: 0, logger: logger)
            while verifier.problem == nil, let last = current.entries.last {
                async let upcoming = fetchPage(connection, from: Int64(last.index) + 1, logger: logger)
                verifier.add(entries: current.entries, nodes: current.nodes)
                progress(verifier.size, UInt64(max(total, 0)))
                current = try await upcoming
            }
            if verifier.problem == nil {
                verifier.finish()
            }
            if verifier.problem == nil {
                let size = Int64(verifier.size)
                for try await (l, v) in try await connection.query(
                    "SELECT last_leaf, level FROM merkle_nodes WHERE last_leaf >= \(size) ORDER BY last_leaf LIMIT 1", logger: logger
                ).decode((Int64, Int16).self) {
                    _ = verifier.add(entries: [], nodes: nil)
                    return report(verifier, problem: LedgerProblem(index: UInt64(l), message: "a stored subtree hash (level \(v)) ends at entry \(l), beyond the last entry"))
                }
            }
            try await connection.query("COMMIT", logger: logger)
            return report(verifier, problem: verifier.problem)
        } catch {
            throw Database.map(error, "verifying the ledger")
        }
    }

    /// One page of entries from index `from`, and the stored subtree hashes whose last leaf lies
    /// in `from ... last index of the page`.
    static func fetchPage(_ connection: PostgresConnection, from next: Int64, logger: Logger) async throws -> (entries: [StoredEntry], nodes: [StoredNode]) {
        let page = Int64(pageSize)
        var entries: [StoredEntry] = []
        entries.reserveCapacity(pageSize)
        let rows = try await connection.query("""
            SELECT \(unescaped: EntryRow.columns) FROM entries WHERE idx >= \(next) ORDER BY idx LIMIT \(page)
            """, logger: logger)
        for try await row in rows { entries.append(try EntryRow.decode(row)) }
        guard let last = entries.last else { return ([], []) }
        let hi = Int64(last.index)
        var nodes: [StoredNode] = []
        let nodeRows = try await connection.query("""
            SELECT last_leaf, level, hash FROM merkle_nodes WHERE last_leaf >= \(next) AND last_leaf <= \(hi) ORDER BY last_leaf, level
            """, logger: logger)
        for try await (l, v, h) in nodeRows.decode((Int64, Int16, ByteBuffer).self) {
            nodes.append(StoredNode(lastLeaf: UInt64(l), level: Int(v), hash: h.bytes))
        }
        return (entries, nodes)
    }

    static func report(_ v: LedgerVerifier, problem: LedgerProblem?) -> VerificationReport {
        VerificationReport(entries: v.size, checkpoints: v.checkpointsVerified, storedNodes: v.nodesVerified, root: v.root,
                           trustedKeyIDs: v.trusted.keys.keys.sorted(), problem: problem)
    }
}
