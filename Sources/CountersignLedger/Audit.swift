public import CountersignConfig
public import CountersignVerify
import Foundation
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
    /// - Parameter given: checkpoints kept outside the ledger (``StoredCheckpoint/printed``): each
    ///   must be signed by a trusted key and match the ledger at its size, which finds a ledger cut
    ///   back, with its own checkpoints, and written anew.
    /// - Parameter progress: called after each page with (entries checked, entries in total).
    /// - Throws: ``LedgerError`` when the database cannot be read (a tampered ledger is not an
    ///   error: it is the report's `problem`).
    public static func verifyDatabase(database: DatabaseSettings, role: DatabaseRole = .reader, trustedKeys: TrustedKeys,
                                      origin: String?, given: [StoredCheckpoint] = [], timeout: Duration = .seconds(60), logger: Logger,
                                      progress: @Sendable (UInt64, UInt64) -> Void = { _, _ in }) async throws -> VerificationReport {
        let connection = try await Database.connect(database, role, timeout: timeout, logger: logger)
        defer { Task { [connection] in try? await connection.close() } }
        do {
            let (total, checkpoints) = try await beginSnapshot(connection, timeout: timeout, logger: logger)
            var verifier = LedgerVerifier(trustedKeys: trustedKeys, origin: origin)
            // Checkpoints first (they are few), queued by size; those kept outside the ledger too.
            for cp in given + checkpoints { verifier.add(checkpoint: cp) }
            // Double buffering: the next page is read and decoded while this one is checked.
            var current = try await fetchPage(connection, from: 0, timeout: timeout, logger: logger)
            while verifier.problem == nil, let last = current.entries.last {
                async let upcoming = fetchPage(connection, from: Int64(last.index) + 1, timeout: timeout, logger: logger)
                verifier.add(entries: current.entries, nodes: current.nodes)
                progress(verifier.size, UInt64(max(total, 0)))
                current = try await upcoming
            }
            if verifier.problem == nil {
                verifier.finish()
            }
            if verifier.problem == nil {
                let size = Int64(verifier.size)
                let beyond = try await connection.within(timeout, "reading the subtree hashes beyond the last entry") { c -> (Int64, Int16)? in
                    for try await row in try await c.query(
                        "SELECT last_leaf, level FROM merkle_nodes WHERE last_leaf >= \(size) ORDER BY last_leaf LIMIT 1", logger: logger
                    ).decode((Int64, Int16).self) { return row }
                    return nil
                }
                if let (l, v) = beyond {
                    return report(verifier, problem: LedgerProblem(index: UInt64(l), message: "a stored subtree hash (level \(v)) ends at entry \(l), beyond the last entry"))
                }
            }
            try await connection.within(timeout, "ending the snapshot") { c in _ = try await c.query("COMMIT", logger: logger) }
            return report(verifier, problem: verifier.problem)
        } catch {
            throw Database.map(error, "verifying the ledger")
        }
    }

    /// Opens the read-only snapshot (REPEATABLE READ) that a whole-ledger read runs in; returns the
    /// number of entries and the checkpoints, by size. Each query of such a read is bounded by
    /// `timeout` (``PostgresConnection/within(_:_:_:)``); the database's own statement timeout is
    /// lifted for the snapshot.
    static func beginSnapshot(_ connection: PostgresConnection, timeout: Duration,
                              logger: Logger) async throws -> (entries: Int64, checkpoints: [StoredCheckpoint]) {
        try await connection.within(timeout, "opening a snapshot of the ledger") { c in
            try await c.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
            try await c.query("SET LOCAL statement_timeout TO 0", logger: logger)
            var total: Int64 = 0
            for try await (n,) in try await c.query("SELECT count(*) FROM entries", logger: logger).decode((Int64,).self) { total = n }
            var checkpoints: [StoredCheckpoint] = []
            let cps = try await c.query("""
                SELECT body, tree_size, root_hash, payload_type, signature, key_id, epoch FROM checkpoints ORDER BY tree_size
                """, logger: logger)
            for try await (b, n, r, t, s, k, e) in cps.decode((ByteBuffer, Int64, ByteBuffer, String, ByteBuffer, String, Int64).self) {
                checkpoints.append(StoredCheckpoint(body: b.bytes, treeSize: UInt64(n), rootHash: r.bytes, payloadType: t,
                                                    signature: s.bytes, keyID: k, epoch: UInt64(e)))
            }
            return (total, checkpoints)
        }
    }

    /// One page of entries from index `from` (at most ``pageSize``), within `timeout`.
    static func fetchEntries(_ connection: PostgresConnection, from next: Int64, timeout: Duration, logger: Logger) async throws -> [StoredEntry] {
        let page = Int64(pageSize)
        return try await connection.within(timeout, "reading entries from \(next)") { c in
            var entries: [StoredEntry] = []
            entries.reserveCapacity(pageSize)
            let rows = try await c.query("""
                SELECT \(unescaped: EntryRow.columns) FROM entries WHERE idx >= \(next) ORDER BY idx LIMIT \(page)
                """, logger: logger)
            for try await row in rows { entries.append(try EntryRow.decode(row)) }
            return entries
        }
    }

    /// One page of entries from index `from`, and the stored subtree hashes whose last leaf lies
    /// in `from ... last index of the page`.
    static func fetchPage(_ connection: PostgresConnection, from next: Int64, timeout: Duration,
                          logger: Logger) async throws -> (entries: [StoredEntry], nodes: [StoredNode]) {
        let entries = try await fetchEntries(connection, from: next, timeout: timeout, logger: logger)
        guard let last = entries.last else { return ([], []) }
        let hi = Int64(last.index)
        let nodes = try await connection.within(timeout, "reading subtree hashes from \(next)") { c in
            var nodes: [StoredNode] = []
            let nodeRows = try await c.query("""
                SELECT last_leaf, level, hash FROM merkle_nodes WHERE last_leaf >= \(next) AND last_leaf <= \(hi) ORDER BY last_leaf, level
                """, logger: logger)
            for try await (l, v, h) in nodeRows.decode((Int64, Int16, ByteBuffer).self) {
                nodes.append(StoredNode(lastLeaf: UInt64(l), level: Int(v), hash: h.bytes))
            }
            return nodes
        }
        return (entries, nodes)
    }

    static func report(_ v: LedgerVerifier, problem: LedgerProblem?) -> VerificationReport {
        VerificationReport(entries: v.size, checkpoints: v.checkpointsVerified, storedNodes: v.nodesVerified, root: v.root,
                           trustedKeyIDs: v.trusted.keys.keys.sorted(), problem: problem)
    }
}
