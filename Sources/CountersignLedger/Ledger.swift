public import CountersignConfig
public import CountersignVerify
import Foundation
public import Logging
import NIOCore
import PostgresNIO

/// The tamper-evident ledger in PostgreSQL: append-only rows of signed statements, an RFC 6962
/// Merkle tree over them, signed checkpoints, and inclusion and consistency proofs.
///
/// Make one per process with the writer login (the server) or the reader login (auditors), and
/// run ``run()`` in a long-lived task for as long as it is used: it runs the connection pool,
/// the batch writer and the checkpointer (when a signer is given). Appends need a lease:
/// ``acquireLease(holder:ttl:)`` first, then ``renewLease(ttl:)`` well inside the TTL.
///
/// ```swift
/// let ledger = try Ledger(database: config.database, settings: config.ledger, signer: signer, logger: logger)
/// async let _ = ledger.run()
/// _ = try await ledger.acquireLease(holder: config.node.name, ttl: .seconds(10))
/// let index = try await ledger.append(LedgerEntry(kind: .decision, statement: signed, agent: a, owner: o, requestID: id))
/// ```
public final class Ledger: Sendable {
    /// Tuning. Defaults: ``defaults``.
    public struct Options: Sendable, Hashable {
        /// Longest a database operation may take before it fails with `unavailable`. Default 5 s.
        public var timeout: Duration
        /// Most entries written in one batch (one statement, one commit). Default 2,000.
        public var batchLimit: Int
        /// Connections of the read pool. Default 8.
        public var readConnections: Int

        public init(timeout: Duration = .seconds(5), batchLimit: Int = 2000, readConnections: Int = 8) {
            self.timeout = timeout
            self.batchLimit = batchLimit
            self.readConnections = readConnections
        }

        public static let defaults = Options()
    }

    /// The gauge of the ledger's size (entries), recorded by the writer after every commit. The
    /// node records it too when it becomes active, before it has appended anything.
    public static let ledgerSizeMetric = "countersign_ledger_size"

    public let database: DatabaseSettings
    public let settings: LedgerSettings
    public let role: DatabaseRole
    let options: Options
    let logger: Logger
    let signer: (any StatementSigner)?
    let client: PostgresClient
    let writer: BatchWriter
    let checkpointWake: AsyncStream<Void>.Continuation
    let checkpointRequests: AsyncStream<Void>
    /// Set by ``run()`` as it starts the pool: reads wait for it, since PostgresClient wants its
    /// `run()` under way before a connection is leased (else it logs "run() hasn't been called").
    let poolRunning = Flag()
    /// The deadlines of reads in flight (see ``read(_:_:)``).
    let deadlines = Deadlines()

    /// - Parameters:
    ///   - database: where the ledger is and the logins.
    ///   - settings: origin of checkpoints and the checkpoint interval.
    ///   - role: `.writer` (default) for the server, `.reader` for read-only use.
    ///   - signer: signs checkpoints; without one, ``run()`` makes none and ``checkpoint()`` throws.
    ///   - options: timeouts and batch size (``Options/defaults``).
    /// - Throws: ``LedgerError`` when a password cannot be read.
    public init(database: DatabaseSettings, settings: LedgerSettings = .defaults, role: DatabaseRole = .writer,
                signer: (any StatementSigner)? = nil, options: Options = .defaults, logger: Logger) throws {
        self.database = database
        self.settings = settings
        self.role = role
        self.options = options
        self.logger = logger
        self.signer = signer
        let config = try Database.clientConfiguration(database, role, connectTimeout: options.timeout, maxConnections: options.readConnections)
        self.client = PostgresClient(configuration: config, backgroundLogger: logger)
        self.writer = BatchWriter(database: database, timeout: options.timeout, batchLimit: options.batchLimit, logger: logger)
        (self.checkpointRequests, self.checkpointWake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Runs the read pool, the batch writer and, with a signer, the checkpointer, until the task
    /// is cancelled. Queued appends then fail with `unavailable`. Reads made before it starts wait
    /// for it (within ``Options/timeout``).
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                // Nothing suspends between setting the flag and PostgresClient.run() marking itself running.
                self.poolRunning.set()
                await self.client.run()
            }
            group.addTask { await self.deadlines.run(every: .milliseconds(50)) }
            if role == .writer {
                // The writer runs on a thread of its own (BatchWriter); this task waits for it.
                group.addTask { await self.writer.run() }
                if signer != nil {
                    group.addTask { await self.runCheckpointer() }
                }
            }
            await group.next()
            group.cancelAll()
        }
    }

    /// Runs the ledger (``run()``) for as long as `body` takes, then stops it: for short-lived users
    /// such as the command line.
    public func withRunning<T>(_ body: () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await self.run() }
            defer { group.cancelAll() }
            return try await body()
        }
    }

    // MARK: Appending

    /// Appends one signed statement; returns its index once its transaction has committed.
    /// - Throws: ``LedgerError``: `leaseLost` without a lease, `staleEpoch` when another node
    ///   took the lease (the database refused the epoch), `unavailable` when the database cannot
    ///   be reached in time, `conflict` when another writer appended at the same moment, `exists`
    ///   when the entry is a decision and the ledger already holds one for its request id.
    /// - Parameter expected: the announcement of this append (``expectAppend()``), if it was
    ///   announced; the append consumes it.
    public func append(_ entry: LedgerEntry, expected: ExpectedAppend? = nil) async throws -> UInt64 {
        try await writer.submit([entry], expected: expected)[0]
    }

    /// Announces an append that is on its way: a decision that is being evaluated and signed.
    /// While announced appends are on their way and the last batch was not small (appends are
    /// arriving side by side), the writer waits for them, a little (``BatchWriter/commitDelay``),
    /// so that they share a commit: one batch of 20 instead of three of 7 costs PostgreSQL and the
    /// node less CPU per entry. Pass the announcement to ``append(_:expected:)``, and withdraw it
    /// (``ExpectedAppend/withdraw()``, in a `defer`) in case the append is never made.
    public func expectAppend() -> ExpectedAppend {
        writer.expect()
    }

    /// Appends announced and not yet made or withdrawn (none once every call has ended).
    var appendsExpected: Int { writer.appendsExpected }

    /// Appends statements together, in order, in one transaction; returns their indices.
    public func append(contentsOf entries: [LedgerEntry]) async throws -> [UInt64] {
        try await writer.submit(entries)
    }

    // MARK: Lease (the fence)

    /// Takes the writer lease if it is free (expired) or already this holder's, bumping the epoch;
    /// appends then carry the new epoch.
    /// - Throws: ``LedgerError`` `leaseLost` when another holder's lease is live.
    @discardableResult
    public func acquireLease(holder: String, ttl: Duration) async throws -> Lease {
        let ms = Double(ttl.milliseconds)
        let lease: Lease? = try await write("acquiring the lease") { c, l in
            let rows = try await c.query("""
                UPDATE lease SET holder = \(holder), epoch = epoch + 1,
                                 expires_at = now() + \(ms) * interval '1 millisecond'
                WHERE id = 1 AND (expires_at <= now() OR holder = \(holder))
                RETURNING holder, epoch, expires_at
                """, logger: l)
            for try await (h, e, x) in rows.decode((String, Int64, Date).self) {
                return Lease(holder: h, epoch: UInt64(e), expiresAt: x, isLive: true)
            }
            return nil
        }
        guard let lease else {
            let current = try await currentLease()
            throw LedgerError(.leaseLost, "the lease is held by \(current.holder) (epoch \(current.epoch)) until \(current.expiresAt)")
        }
        writer.setEpoch(lease.epoch)
        return lease
    }

    /// Extends this node's lease by `ttl` from now (database clock).
    /// - Throws: ``LedgerError`` `leaseLost` when the lease is no longer this node's (appends stop).
    @discardableResult
    public func renewLease(ttl: Duration) async throws -> Lease {
        guard let epoch = writer.epoch else { throw LedgerError(.leaseLost, "no lease to renew") }
        let ms = Double(ttl.milliseconds)
        let ep = Int64(epoch)
        let lease: Lease? = try await write("renewing the lease") { c, l in
            let rows = try await c.query("""
                UPDATE lease SET expires_at = now() + \(ms) * interval '1 millisecond'
                WHERE id = 1 AND epoch = \(ep) AND expires_at > now()
                RETURNING holder, epoch, expires_at
                """, logger: l)
            for try await (h, e, x) in rows.decode((String, Int64, Date).self) {
                return Lease(holder: h, epoch: UInt64(e), expiresAt: x, isLive: true)
            }
            return nil
        }
        guard let lease else {
            writer.setEpoch(nil)
            throw LedgerError(.leaseLost, "the lease of epoch \(epoch) was lost or expired")
        }
        return lease
    }

    /// Gives this node's lease up at once (it expires now, database clock), so that another holder
    /// need not wait for its TTL; appends and checkpoints stop. Does nothing without a lease.
    public func releaseLease() async throws {
        guard let epoch = writer.epoch else { return }
        writer.setEpoch(nil)
        let ep = Int64(epoch)
        try await write("releasing the lease") { c, l in
            try await c.query("UPDATE lease SET expires_at = now() WHERE id = 1 AND epoch = \(ep) AND expires_at > now()", logger: l)
        }
    }

    /// The lease row as it is now.
    public func currentLease() async throws -> Lease {
        try await read("reading the lease") { c, l in
            let rows = try await c.query("SELECT holder, epoch, expires_at, expires_at > now() FROM lease WHERE id = 1", logger: l)
            for try await (h, e, x, live) in rows.decode((String, Int64, Date, Bool).self) {
                return Lease(holder: h, epoch: UInt64(e), expiresAt: x, isLive: live)
            }
            throw LedgerError(.schema, "the lease row is missing")
        }
    }

    /// The epoch appends carry now, if this node holds a lease.
    public var currentEpoch: UInt64? {
        get async { writer.epoch }
    }

    // MARK: Reads

    /// Why a new connection to the database fails, or nil when one can be made (and is closed at
    /// once). The read pool only waits when it cannot connect (PostgresNIO retries quietly), so a
    /// read that times out says nothing of a refused login or a missing socket: this does. Bounded
    /// by ``Options/timeout``.
    public func connectionProblem() async -> LedgerError? {
        let database = self.database, role = self.role, timeout = options.timeout, logger = self.logger
        do {
            try await bounded("connecting to the ledger database as \(role.rawValue)", timeout: timeout) {
                let connection = try await Database.connect(database, role, timeout: timeout, logger: logger)
                try? await connection.close()
            }
            return nil
        } catch {
            return Database.map(error, "connecting to the ledger database as \(role.rawValue)")
        }
    }

    /// Number of committed entries (the tree size).
    public func size() async throws -> UInt64 {
        try await read("reading the ledger size") { c, l in try await TreeStore.size(c, logger: l) }
    }

    /// The newest entry of `kind` for `requestID`, if any (for idempotency and `GetDecision`).
    public func latest(kind: EntryKind, requestID: String) async throws -> StoredEntry? {
        let what = "looking up request \(requestID)"
        if kind == .decision {
            return try await firstRow(what, DecisionOfRequestStatement(requestID: requestID))
        }
        return try await firstRow(what, LatestEntryStatement(requestID: requestID, kind: kind.rawValue))
    }

    /// The entry at `index`.
    /// - Throws: ``LedgerError`` `outOfRange` beyond the end.
    public func entry(at index: UInt64) async throws -> StoredEntry {
        let i = Int64(index)
        let found: StoredEntry? = try await read("reading entry \(index)") { c, l in
            let rows = try await c.query("SELECT \(unescaped: EntryRow.columns) FROM entries WHERE idx = \(i)", logger: l)
            for try await row in rows { return try EntryRow.decode(row) }
            return nil
        }
        guard let found else { throw LedgerError.outOfRange("no entry at index \(index)") }
        return found
    }

    // MARK: Proofs

    /// The inclusion proof of leaf `index` in the tree of `treeSize` leaves, in RFC 9162 order.
    /// - Throws: ``LedgerError`` `outOfRange` unless `index < treeSize ≤ size()`.
    public func proveInclusion(index: UInt64, treeSize: UInt64) async throws -> [[UInt8]] {
        guard index < treeSize else {
            throw LedgerError.outOfRange("index \(index) is not below tree size \(treeSize)")
        }
        let plan = ProofPlan.inclusion(index: index, treeSize: treeSize)
        let hashes = try await read("proving inclusion") { c, l in
            try await TreeStore.proof(c, plan, mustExist: treeSize - 1, logger: l)
        }
        guard let hashes else { throw LedgerError.outOfRange("tree size \(treeSize) is beyond the ledger") }
        return hashes
    }

    /// The consistency proof between tree sizes `first` and `second`, in RFC 9162 order (empty
    /// when they are equal).
    /// - Throws: ``LedgerError`` `outOfRange` unless `1 ≤ first ≤ second ≤ size()`.
    public func proveConsistency(first: UInt64, second: UInt64) async throws -> [[UInt8]] {
        guard first >= 1, first <= second else {
            throw LedgerError.outOfRange("consistency needs 1 ≤ first (\(first)) ≤ second (\(second))")
        }
        let plan = ProofPlan.consistency(first: first, second: second)
        let hashes = try await read("proving consistency") { c, l in
            try await TreeStore.proof(c, plan, mustExist: second - 1, logger: l)
        }
        guard let hashes else { throw LedgerError.outOfRange("tree size \(second) is beyond the ledger") }
        return hashes
    }

    /// The root hash of the tree of `treeSize` leaves (≤ `size()`).
    public func rootHash(treeSize: UInt64) async throws -> [UInt8] {
        guard treeSize > 0 else { return Merkle.emptyRoot }
        let parts = ProofPlan.decompose(0, treeSize)
        let plan = ProofPlan(nodes: [parts])
        let hashes = try await read("computing a root") { c, l in
            try await TreeStore.proof(c, plan, mustExist: treeSize - 1, logger: l)
        }
        guard let hashes else { throw LedgerError.outOfRange("tree size \(treeSize) is beyond the ledger") }
        return hashes[0]
    }

    // MARK: Checkpoints

    /// The newest signed checkpoint.
    /// - Throws: ``LedgerError`` `notFound` when there is none yet.
    public func getCheckpoint() async throws -> StoredCheckpoint {
        let found: StoredCheckpoint? = try await read("reading the checkpoint") { c, l in
            let rows = try await c.query("""
                SELECT body, tree_size, root_hash, payload_type, signature, key_id, epoch
                FROM checkpoints ORDER BY tree_size DESC LIMIT 1
                """, logger: l)
            for try await (b, n, r, t, s, k, e) in rows.decode((ByteBuffer, Int64, ByteBuffer, String, ByteBuffer, String, Int64).self) {
                return StoredCheckpoint(body: b.bytes, treeSize: UInt64(n), rootHash: r.bytes, payloadType: t,
                                        signature: s.bytes, keyID: k, epoch: UInt64(e))
            }
            return nil
        }
        guard let found else { throw LedgerError(.notFound, "no checkpoint yet") }
        return found
    }

    /// Signs and stores a checkpoint of the tree as committed now (on demand). Returns the
    /// existing one when the newest checkpoint already has this size.
    ///
    /// The signing key is chosen before the tree is read: a rotation makes the new key active only
    /// once the transition that trusts it has committed, so a tree read afterwards holds that
    /// transition. Signing with whatever key is active after the tree was read could sign a tree
    /// from before the transition with the new key, which `ledger verify` rightly refuses
    /// ("signed by key …, which is not trusted"), for ever.
    /// - Throws: ``LedgerError``; the signer's error when it cannot sign.
    @discardableResult
    public func checkpoint() async throws -> StoredCheckpoint {
        guard let signer else { throw LedgerError(.invalidArgument, "this ledger has no signer for checkpoints") }
        guard let epoch = writer.epoch else { throw LedgerError(.leaseLost, "this node holds no lease") }
        let keyID = try await signer.activeKeyID
        let head: CompactRange
        if let t = writer.committedTree {
            head = t
        } else {
            head = try await read("reading the tree head") { c, l in try await TreeStore.loadRightEdge(c, logger: l) }
        }
        if let latest = try? await getCheckpoint(), latest.treeSize >= head.size { return latest }
        let text = Checkpoint(origin: settings.origin, treeSize: head.size, rootHash: head.root)
        let signed = try await signer.sign(payloadType: PayloadType.checkpoint, payload: text.bytes, keyID: keyID)
        let stored = StoredCheckpoint(body: signed.payload, treeSize: head.size, rootHash: head.root, payloadType: signed.payloadType,
                                      signature: signed.signature, keyID: signed.keyID, epoch: epoch)
        let n = Int64(head.size), ep = Int64(epoch)
        let body = ByteBuffer(bytes: stored.body), root = ByteBuffer(bytes: stored.rootHash), sig = ByteBuffer(bytes: stored.signature)
        let ptype = stored.payloadType, kid = stored.keyID
        try await write("storing a checkpoint") { c, l in
            try await c.query("""
                INSERT INTO checkpoints (tree_size, root_hash, body, payload_type, signature, key_id, epoch)
                VALUES (\(n), \(root), \(body), \(ptype), \(sig), \(kid), \(ep))
                ON CONFLICT (tree_size) DO NOTHING
                """, logger: l)
        }
        return stored
    }

    /// Asks the checkpointer for a checkpoint soon (without waiting for it).
    public func requestCheckpoint() { checkpointWake.yield() }

    private func runCheckpointer() async {
        let interval = Duration.milliseconds(max(10, settings.checkpointIntervalMs))
        var lastSize: UInt64 = 0
        /// The epoch whose holder has checkpointed what it found when it took the lease.
        var caughtUp: UInt64?
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [checkpointWake] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    checkpointWake.yield()
                }
            }
            for await _ in checkpointRequests {
                if Task.isCancelled { break }
                guard let epoch = writer.epoch else { continue }  // only the lease holder signs them
                if let tree = writer.committedTree {
                    guard tree.size > lastSize else { continue }
                } else {
                    // The lease is new and nothing has been appended under it: the entries of the
                    // previous holder (or of this node before a restart) that no checkpoint covers
                    // yet are checkpointed now, once (checkpoint() reads the tree from the database).
                    guard epoch != caughtUp else { continue }
                }
                do {
                    let cp = try await checkpoint()
                    lastSize = cp.treeSize
                    caughtUp = epoch
                } catch {
                    logger.warning("checkpoint failed", metadata: ["cs.error": "\(String(reflecting: error))"])
                }
            }
            group.cancelAll()
        }
    }

    // MARK: Helpers

    /// The first row of a prepared statement, if any, read as ``read(_:_:)`` reads.
    private func firstRow<S: PostgresPreparedStatement>(_ what: String, _ statement: S) async throws -> S.Row? where S.Row: Sendable {
        try await read(what) { c, l in
            for try await row in try await c.execute(statement, logger: l) { return row }
            return nil
        }
    }

    /// ``read(_:_:)`` for statements that change the database: returns only once they have
    /// committed (``PostgresConnection/confirmCommitted(logger:)``).
    @discardableResult
    func write<T: Sendable>(_ what: String, _ body: @escaping @Sendable (PostgresConnection, Logger) async throws -> T) async throws -> T {
        try await read(what) { c, l in
            let result = try await body(c, l)
            try await c.confirmCommitted(logger: l)
            return result
        }
    }

    /// Runs `body` on a pooled connection with the deadline of ``Options/timeout``, mapping errors.
    ///
    /// The operation runs in a task of its own (``bounded(_:timeout:from:deadlines:onTimeout:_:)``)
    /// and the caller waits for whichever comes first: its result, or the deadline (checked by the
    /// reaper of ``run()``), which cancels it (a lease still waiting for a connection ends; a query
    /// already sent finishes in the background and gives its connection back).
    func read<T: Sendable>(_ what: String, _ body: @escaping @Sendable (PostgresConnection, Logger) async throws -> T) async throws -> T {
        let client = self.client, logger = self.logger, timeout = options.timeout
        let start = ContinuousClock.now
        while !poolRunning.isSet {
            guard ContinuousClock.now - start < timeout else {
                throw LedgerError.unavailable("\(what): the ledger is not running (nothing called run())")
            }
            try await Task.sleep(for: .milliseconds(1))
        }
        do {
            return try await bounded(what, timeout: timeout, from: start, deadlines: deadlines) {
                try await client.withConnection { c in try await body(c, logger) }
            }
        } catch {
            throw Database.map(error, what)
        }
    }
}

/// The decision of a request id, if any (replays, `GetDecision`): a prepared statement, parsed and
/// planned once per connection. The kind is spelled out, so that the plan uses the unique index of
/// migration 3, whose predicate it is.
struct DecisionOfRequestStatement: PostgresPreparedStatement {
    static let sql = """
        SELECT \(EntryRow.columns) FROM entries
        WHERE request_id = $1 AND kind = 'decision'
        """
    typealias Row = StoredEntry

    var requestID: String

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 1)
        b.append(requestID)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> StoredEntry {
        try EntryRow.decode(row)
    }
}

/// The newest entry of another kind for a request id (refusals, executions, overrides). The
/// `kind <> 'decision'` is the predicate of the index of migration 5: with it, the generic plan of
/// the prepared statement uses that index whatever `$2` is.
struct LatestEntryStatement: PostgresPreparedStatement {
    static let sql = """
        SELECT \(EntryRow.columns) FROM entries
        WHERE request_id = $1 AND kind = $2 AND kind <> 'decision' ORDER BY idx DESC LIMIT 1
        """
    typealias Row = StoredEntry

    var requestID: String
    var kind: String

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 2)
        b.append(requestID)
        b.append(kind)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> StoredEntry {
        try EntryRow.decode(row)
    }
}

/// Decoding of `entries` rows.
enum EntryRow {
    static let columns = "idx, kind, payload_type, statement, signature, key_id, agent, owner, request_id, fingerprint, epoch, leaf_hash, created_at"

    static func decode(_ row: PostgresRow) throws -> StoredEntry {
        let (i, k, t, st, sig, kid, a, o, r, fp, e, lh, at) = try row.decode(
            (Int64, String, String, ByteBuffer, ByteBuffer, String, String, String, String?, ByteBuffer?, Int64, ByteBuffer, Date).self)
        return StoredEntry(index: UInt64(i), kind: EntryKind(rawValue: k),
                           statement: SignedStatement(payloadType: t, payload: st.bytes, signature: sig.bytes, keyID: kid),
                           agent: a, owner: o, requestID: r, fingerprint: fp?.bytes, epoch: UInt64(e), leafHash: lh.bytes, createdAt: at)
    }
}
