import CountersignConfig
import CountersignVerify
import Logging
import NIOCore
import PostgresNIO

/// The single writer of a ``Ledger``: appends enter a queue; one loop drains it in batches (many
/// statements in one INSERT statement, in arrival order), commits with synchronous commit on, and
/// only then completes each caller with its index. It owns one database connection and the right
/// edge of the Merkle tree, so that the subtree hashes each batch completes are written in the
/// same statement as its entries.
actor BatchWriter {
    private struct Pending {
        var entries: [LedgerEntry]
        var continuation: CheckedContinuation<[UInt64], any Error>
    }

    private let database: DatabaseSettings
    private let timeout: Duration
    private let batchLimit: Int
    private let logger: Logger

    private var pending: [Pending] = []
    private var pendingCount = 0
    /// Callers in the last batch (to let them rejoin the next one).
    private var lastBatchCallers = 0
    private var wake: CheckedContinuation<Void, Never>?
    private var running = false
    private var stopped = false
    private var connection: PostgresConnection?
    /// The right edge of the tree as committed; `nil` when it must be read again from the database.
    private var tree: CompactRange?
    /// Epoch of the lease this writer holds; `nil` before ``setEpoch(_:)``.
    private(set) var epoch: UInt64?

    /// The writer runs on the event loop of its database connection, so that a batch's round trip
    /// costs no thread hops between the actor and the connection.
    private let eventLoop: any EventLoop
    nonisolated var unownedExecutor: UnownedSerialExecutor { eventLoop.executor.asUnownedSerialExecutor() }

    init(database: DatabaseSettings, timeout: Duration, batchLimit: Int, logger: Logger) {
        self.eventLoop = PostgresConnection.defaultEventLoopGroup.any()
        self.database = database
        self.timeout = timeout
        self.batchLimit = batchLimit
        self.logger = logger
    }

    /// A new epoch drops the cached right edge: another holder may have appended in between.
    func setEpoch(_ epoch: UInt64?) {
        if epoch != self.epoch { tree = nil }
        self.epoch = epoch
    }

    /// The committed tree size and right edge known to this writer, if any.
    var committedTree: CompactRange? { tree }

    /// Queues `entries` (kept together, in order) and waits for their indices, after COMMIT.
    func submit(_ entries: [LedgerEntry]) async throws -> [UInt64] {
        guard !stopped else { throw LedgerError.unavailable("the ledger writer has stopped") }
        guard !entries.isEmpty else { return [] }
        return try await withCheckedThrowingContinuation { (c: CheckedContinuation<[UInt64], any Error>) in
            pending.append(Pending(entries: entries, continuation: c))
            pendingCount += entries.count
            if let w = wake {
                wake = nil
                w.resume()
            }
        }
    }

    private func wakeUp() {
        if let w = wake {
            wake = nil
            w.resume()
        }
    }

    /// The loop: runs until the task is cancelled; then fails what is still queued.
    func run() async {
        guard !running else { return }
        running = true
        defer {
            running = false
            stopped = true
            for p in pending { p.continuation.resume(throwing: LedgerError.unavailable("the ledger writer has stopped")) }
            pending = []
            pendingCount = 0
            if let c = connection {
                connection = nil
                Task { try? await c.close() }
            }
        }
        while !Task.isCancelled {
            if pending.isEmpty {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                        if Task.isCancelled || !pending.isEmpty { c.resume() } else { wake = c }
                    }
                } onCancel: {
                    Task { await self.wakeUp() }
                }
                continue
            }
            // Group commit: the callers whose appends the last batch completed usually append again
            // at once; give them a moment (a few scheduler turns, at most ~200 µs) to join this batch
            // rather than commit a batch of one and leave them for the next.
            if lastBatchCallers > 1 && pending.count < lastBatchCallers {
                let clock = ContinuousClock()
                let deadline = clock.now.advanced(by: .microseconds(200))
                while pending.count < lastBatchCallers && clock.now < deadline && !Task.isCancelled {
                    await Task.yield()
                }
            }
            var batch: [Pending] = []
            var count = 0
            while let first = pending.first, batch.isEmpty || count + first.entries.count <= batchLimit {
                batch.append(first)
                count += first.entries.count
                pending.removeFirst()
            }
            pendingCount -= count
            lastBatchCallers = batch.count
            do {
                let start = try await write(batch.flatMap(\.entries))
                var next = start
                for p in batch {
                    let indices = (0..<p.entries.count).map { next + UInt64($0) }
                    next += UInt64(p.entries.count)
                    p.continuation.resume(returning: indices)
                }
            } catch {
                let e = Database.map(error, "append")
                logger.warning("ledger append failed", metadata: ["cs.error": "\(String(reflecting: e))"])
                for p in batch { p.continuation.resume(throwing: e) }
                tree = nil
                if e.code == .unavailable, let c = connection {
                    connection = nil
                    try? await c.close()
                }
            }
        }
    }

    private func ensureConnection() async throws -> PostgresConnection {
        if let c = connection, !c.isClosed { return c }
        let db = database, t = timeout, l = logger, loop = eventLoop
        let c = try await Database.connect(db, .writer, timeout: t, logger: l, on: loop)
        connection = c
        return c
    }

    /// Writes one batch in one statement (its own transaction); returns the first index.
    private func write(_ entries: [LedgerEntry]) async throws -> UInt64 {
        guard let epoch else {
            throw LedgerError(.leaseLost, "this node holds no lease: acquire one before appending")
        }
        let connection = try await ensureConnection()
        let t = timeout
        var range: CompactRange
        if let tree {
            range = tree
        } else {
            let l = logger
            range = try await withDeadline(t, "reading the tree head", onTimeout: { connection.closeNow() }) {
                try await TreeStore.loadRightEdge(connection, logger: l)
            }
        }
        let first = range.size
        var idx: [Int64] = [], kinds: [String] = [], types: [String] = [], statements: [ByteBuffer] = []
        var signatures: [ByteBuffer] = [], keyIDs: [String] = [], agents: [String] = [], owners: [String] = []
        var requestIDs: [String] = [], fingerprints: [ByteBuffer] = [], leaves: [ByteBuffer] = []
        var nodeLast: [Int64] = [], nodeLevel: [Int16] = [], nodeHash: [ByteBuffer] = []
        idx.reserveCapacity(entries.count)
        for e in entries {
            let leaf = Merkle.leafHash(bytes: e.statement.payload)
            idx.append(Int64(range.size))
            kinds.append(e.kind.rawValue)
            types.append(e.statement.payloadType)
            statements.append(ByteBuffer(bytes: e.statement.payload))
            signatures.append(ByteBuffer(bytes: e.statement.signature))
            keyIDs.append(e.statement.keyID)
            agents.append(e.agent)
            owners.append(e.owner)
            requestIDs.append(e.requestID ?? "")
            fingerprints.append(ByteBuffer(bytes: e.fingerprint ?? []))
            leaves.append(ByteBuffer(bytes: leaf))
            let leafIndex = range.size
            for node in range.append(leafHash: leaf) {
                nodeLast.append(Int64(leafIndex))
                nodeLevel.append(Int16(node.level))
                nodeHash.append(ByteBuffer(bytes: node.hash))
            }
        }
        let statement = AppendStatement(epoch: Int64(epoch), idx: idx, kinds: kinds, types: types, statements: statements,
                                        signatures: signatures, keyIDs: keyIDs, agents: agents, owners: owners,
                                        requestIDs: requestIDs, fingerprints: fingerprints, leaves: leaves,
                                        nodeLast: nodeLast, nodeLevel: nodeLevel, nodeHash: nodeHash)
        // The deadline is a timer on the connection's event loop that closes the connection (which
        // fails the query): no extra tasks on the hot path.
        let timer = eventLoop.scheduleTask(in: .milliseconds(t.milliseconds)) { connection.closeNow() }
        defer { timer.cancel() }
        var count: Int64 = -1
        do {
            for try await (e, _) in try await connection.execute(statement, logger: logger) { count = e }
        } catch {
            if connection.isClosed {
                throw LedgerError.unavailable("appending \(entries.count) entries: no answer from the database within \(t)", cause: error)
            }
            throw error
        }
        guard count == Int64(entries.count) else {
            throw LedgerError(.corrupt, "append wrote \(count) rows for \(entries.count) entries")
        }
        tree = range
        return first
    }
}

/// The append of one batch: one statement (so one transaction), prepared once per connection.
/// Entries are inserted in index order (the contiguity trigger sees the earlier rows of the same
/// statement); the subtree hashes the batch completes are inserted by the same statement.
struct AppendStatement: PostgresPreparedStatement {
    static let sql = """
        WITH e AS (
            INSERT INTO entries (idx, kind, payload_type, statement, signature, key_id, agent, owner,
                                 request_id, fingerprint, epoch, leaf_hash)
            SELECT u.idx, u.kind, u.ptype, u.stmt, u.sig, u.kid, u.agent, u.owner,
                   nullif(u.rid, ''), nullif(u.fp, ''::bytea), $1, u.leaf
            FROM unnest($2::int8[], $3::text[], $4::text[], $5::bytea[], $6::bytea[], $7::text[], $8::text[], $9::text[],
                        $10::text[], $11::bytea[], $12::bytea[])
                 AS u(idx, kind, ptype, stmt, sig, kid, agent, owner, rid, fp, leaf)
            ORDER BY u.idx
            RETURNING 1
        ), n AS (
            INSERT INTO merkle_nodes (last_leaf, level, hash)
            SELECT * FROM unnest($13::int8[], $14::int2[], $15::bytea[])
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM e), (SELECT count(*) FROM n)
        """
    typealias Row = (Int64, Int64)

    var epoch: Int64
    var idx: [Int64], kinds: [String], types: [String], statements: [ByteBuffer], signatures: [ByteBuffer]
    var keyIDs: [String], agents: [String], owners: [String], requestIDs: [String], fingerprints: [ByteBuffer], leaves: [ByteBuffer]
    var nodeLast: [Int64], nodeLevel: [Int16], nodeHash: [ByteBuffer]

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 15)
        b.append(epoch)
        b.append(idx)
        b.append(kinds)
        b.append(types)
        b.append(statements)
        b.append(signatures)
        b.append(keyIDs)
        b.append(agents)
        b.append(owners)
        b.append(requestIDs)
        b.append(fingerprints)
        b.append(leaves)
        b.append(nodeLast)
        b.append(nodeLevel)
        b.append(nodeHash)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> Row {
        try row.decode(Row.self)
    }
}
