import CountersignVerify
import Logging
import NIOCore
import PostgresNIO

/// Reads of the stored Merkle tree: complete-subtree hashes by primary key.
enum TreeStore {
    /// The number of entries (max index + 1), for both kinds of connection.
    static let sizeSQL = "SELECT coalesce(max(idx) + 1, 0)::int8 FROM entries"

    /// Number of entries (max index + 1).
    static func size(_ connection: PostgresConnection, logger: Logger) async throws -> UInt64 {
        let rows = try await connection.query(PostgresQuery(unsafeSQL: sizeSQL), logger: logger)
        for try await (n,) in rows.decode((Int64,).self) { return UInt64(n) }
        return 0
    }

    /// Hashes of the given complete subtrees, in order, in one query (a prepared statement: parsed
    /// and planned once per connection). A subtree that is not stored (beyond the end of the
    /// ledger) is `nil`.
    static func subtreeHashes(_ connection: PostgresConnection, _ subtrees: [Subtree], logger: Logger) async throws -> [[UInt8]?] {
        guard !subtrees.isEmpty else { return [] }
        let statement = SubtreeHashesStatement(levels: subtrees.map { Int16($0.level) },
                                               positions: subtrees.map { Int64(bitPattern: $0.index) })
        var out = [[UInt8]?](repeating: nil, count: subtrees.count)
        for try await (ord, hash) in try await connection.execute(statement, logger: logger) {
            out[Int(ord) - 1] = hash?.bytes
        }
        return out
    }

    /// The right edge of the committed tree: its size and one complete subtree per set bit.
    static func loadRightEdge(_ connection: PostgresConnection, logger: Logger) async throws -> CompactRange {
        let size = try await self.size(connection, logger: logger)
        return try rightEdge(size: size, hashes: try await subtreeHashes(connection, rightEdgeSubtrees(ofSize: size), logger: logger))
    }

    /// The complete subtrees that make up the right edge of a tree of `size` leaves.
    static func rightEdgeSubtrees(ofSize size: UInt64) -> [Subtree] {
        CompactRange.subtrees(ofSize: size).map { Subtree(level: $0.level, index: $0.index) }
    }

    /// The right edge from the hashes of ``rightEdgeSubtrees(ofSize:)``, all of which must be stored.
    static func rightEdge(size: UInt64, hashes: [[UInt8]?]) throws -> CompactRange {
        let present = hashes.compactMap { $0 }
        guard present.count == hashes.count else {
            throw LedgerError(.corrupt, "the stored tree lacks a subtree of the right edge at size \(size)")
        }
        return try CompactRange(size: size, subtreeHashes: present)
    }

    /// The right edge of the committed tree, read on the writer's connection (libpq).
    static func loadRightEdge(_ connection: WriterConnection, timeout: Duration, deadline: ContinuousClock.Instant) throws -> CompactRange {
        let what = "reading the tree head"
        let sized = try connection.query(sizeSQL, what: what, timeout: timeout, deadline: deadline)
        guard let n = PGBinary.decodeInt8(sized.first?.first ?? nil), n >= 0 else {
            throw LedgerError(.corrupt, "\(what): the ledger size did not decode")
        }
        let size = UInt64(n)
        let parts = rightEdgeSubtrees(ofSize: size)
        guard !parts.isEmpty else { return try rightEdge(size: size, hashes: []) }
        var levels = PGBinary.Array1D(oid: PGBinary.int2), positions = PGBinary.Array1D(oid: PGBinary.int8)
        for p in parts {
            levels.append(int2: Int16(p.level))
            positions.append(int8: Int64(bitPattern: p.index))
        }
        let rows = try connection.execute(subtreeHashes, [levels.bytes, positions.bytes], what: what, timeout: timeout, deadline: deadline)
        var hashes = [[UInt8]?](repeating: nil, count: parts.count)
        for row in rows {
            guard row.count == 2, let ord = PGBinary.decodeInt8(row[0]), ord >= 1, ord <= Int64(parts.count) else {
                throw LedgerError(.corrupt, "\(what): a subtree row did not decode")
            }
            hashes[Int(ord) - 1] = row[1]
        }
        return try rightEdge(size: size, hashes: hashes)
    }

    /// ``SubtreeHashesStatement`` for the writer's connection.
    static let subtreeHashes = WriterConnection.Prepared(name: "countersign_subtrees", sql: SubtreeHashesStatement.sql)

    /// The hashes of a proof plan; `nil` subtrees mean the size is beyond the ledger.
    static func proof(_ connection: PostgresConnection, _ plan: ProofPlan, mustExist lastLeaf: UInt64, logger: Logger) async throws -> [[UInt8]]? {
        var subtrees = plan.subtrees
        let probe = Subtree(level: 0, index: lastLeaf)
        subtrees.append(probe)
        let hashes = try await subtreeHashes(connection, subtrees, logger: logger)
        var table: [Subtree: [UInt8]] = [:]
        for (s, h) in zip(subtrees, hashes) {
            guard let h else { return nil }
            table[s] = h
        }
        return plan.hashes { table[$0]! }
    }
}

/// The hashes of complete subtrees by primary key: level 0 from `entries.idx`, higher levels from
/// `merkle_nodes (last_leaf, level)`; one row per requested subtree with its 1-based position.
struct SubtreeHashesStatement: PostgresPreparedStatement {
    static let sql = """
        SELECT k.ord::int8,
               CASE WHEN k.lvl = 0 THEN (SELECT e.leaf_hash FROM entries e WHERE e.idx = k.pos)
                    ELSE (SELECT m.hash FROM merkle_nodes m
                          WHERE m.last_leaf = ((k.pos + 1) << k.lvl::int) - 1 AND m.level = k.lvl) END
        FROM unnest($1::int2[], $2::int8[]) WITH ORDINALITY AS k(lvl, pos, ord)
        """
    typealias Row = (Int64, ByteBuffer?)

    var levels: [Int16]
    var positions: [Int64]

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 2)
        b.append(levels)
        b.append(positions)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> Row {
        try row.decode(Row.self)
    }
}
