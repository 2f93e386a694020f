import CountersignConfig
import CountersignVerify
import Foundation
import Logging
import Metrics
import NIOCore
import PostgresNIO

/// The single writer of a ``Ledger``: appends enter a queue; one loop drains it in batches (many
/// statements in one INSERT statement, in arrival order), commits with synchronous commit on, and
/// only then (the commit confirmed: ``PostgresConnection/append(_:logger:)``) completes
/// each caller with its index. It owns one database connection and the right
/// edge of the Merkle tree, so that the subtree hashes each batch completes are written in the
/// same statement as its entries.
///
/// Callers do not enter the actor: ``submit(_:)`` puts them in a ``WriteQueue`` under a lock, and
/// the loop resumes each one straight onto the caller's own executor after COMMIT. The actor is a
/// default one (the global executor): measured here, that costs fewer thread wake-ups per append
/// than running it on the connection's event loop, whose jobs every caller then had to cross to.
/// Each batch's deadline is armed in the ledger's ``Deadlines`` (a lock, no timer).
actor BatchWriter {
    private let database: DatabaseSettings
    private let timeout: Duration
    private let batchLimit: Int
    private let logger: Logger

    private let queue = WriteQueue()
    /// Callers in the last batch (to let them rejoin the next one).
    private var lastBatchCallers = 0
    private var running = false
    /// The writer's connection. Not actor state: a batch's database work runs in a task of its own,
    /// which may outlive the batch's deadline (see ``write(_:)``).
    private let connection = ConnectionSlot()
    /// The right edge of the tree as committed; `nil` when it must be read again from the database.
    private var tree: CompactRange?
    /// Epoch of the lease this writer holds; `nil` before ``setEpoch(_:)``.
    private(set) var epoch: UInt64?

    /// The event loop of the writer's connection (and of the group-commit timer).
    private let eventLoop: any EventLoop
    /// Where each batch arms its deadline (the ledger's reaper closes the connection when it passes).
    private let deadlines: Deadlines

    /// How long the loop waits for the callers of the last batch to append again (group commit).
    static let gatherWindow = TimeAmount.microseconds(200)

    init(database: DatabaseSettings, timeout: Duration, batchLimit: Int, deadlines: Deadlines, logger: Logger) {
        self.eventLoop = PostgresConnection.defaultEventLoopGroup.any()
        self.deadlines = deadlines
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
    nonisolated func submit(_ entries: [LedgerEntry]) async throws -> [UInt64] {
        guard !entries.isEmpty else { return [] }
        return try await withCheckedThrowingContinuation { (c: CheckedContinuation<[UInt64], any Error>) in
            if !queue.push(WriteQueue.Pending(entries: entries, continuation: c)) {
                c.resume(throwing: LedgerError.unavailable("the ledger writer has stopped"))
            }
        }
    }

    /// The loop: runs until the task is cancelled; then fails what is still queued.
    func run() async {
        guard !running else { return }
        running = true
        defer {
            running = false
            for p in queue.stop() { p.continuation.resume(throwing: LedgerError.unavailable("the ledger writer has stopped")) }
            connection.close()
        }
        let queue = self.queue
        while !Task.isCancelled {
            await withTaskCancellationHandler {
                await queue.waitForWork()
            } onCancel: {
                queue.wakeWaiter()
            }
            if Task.isCancelled { break }
            // Group commit: the callers whose appends the last batch completed usually append again
            // at once; wait for them (the loop sleeps; at most gatherWindow) to join this batch
            // rather than commit a batch of one and leave them for the next.
            if lastBatchCallers > 1 && queue.callers < lastBatchCallers {
                let loop = eventLoop, target = lastBatchCallers
                await withTaskCancellationHandler {
                    await queue.gather(target: target, within: Self.gatherWindow, on: loop)
                } onCancel: {
                    queue.wakeWaiter()
                }
            }
            let batch = queue.take(limit: batchLimit)
            guard !batch.isEmpty else { continue }
            lastBatchCallers = batch.count
            if let e = await commit(batch), e.code == .exists, batch.count > 1 {
                // One caller's decision is already in the ledger, and the whole batch rolled back:
                // each caller again on its own, so that only that one is refused.
                for p in batch { await commit([p]) }
            }
        }
    }

    /// Writes `batch` in one transaction and completes its callers: each with its indices, or all
    /// with the error. Returns the error, if any.
    @discardableResult
    private func commit(_ batch: [WriteQueue.Pending]) async -> LedgerError? {
        do {
            let entries = batch.count == 1 ? batch[0].entries : batch.flatMap(\.entries)
            let started = ContinuousClock.now
            var next = try await write(entries)
            LedgerMetrics.commit.record(duration: ContinuousClock.now - started)
            LedgerMetrics.batchEntries.record(entries.count)
            for p in batch {
                let indices = (0..<p.entries.count).map { next + UInt64($0) }
                next += UInt64(p.entries.count)
                p.continuation.resume(returning: indices)
            }
            return nil
        } catch {
            let e = Database.map(error, "append")
            if e.code == .exists && batch.count > 1 { return e }  // the caller retries them one by one
            if e.code != .exists {
                logger.warning("ledger append failed", metadata: ["cs.error": "\(String(reflecting: e))"])
                tree = nil
            }
            for p in batch { p.continuation.resume(throwing: e) }
            if e.code == .unavailable { connection.close() }
            return e
        }
    }

    /// Writes one batch in one statement (its own transaction); returns the first index.
    ///
    /// Everything that touches the database (connecting, reading the tree head when it is not
    /// cached, the append) runs under one deadline that does not wait for it
    /// (``bounded(_:timeout:from:deadlines:onTimeout:_:)``): a database that dies in the middle can
    /// leave a query waiting for ever, and the batch's callers must not wait with it. The deadline
    /// closes the connection; whatever the abandoned work does later changes no state of the
    /// writer but the connection slot, and the cached tree is dropped with the failure.
    private func write(_ entries: [LedgerEntry]) async throws -> UInt64 {
        guard let epoch else {
            throw LedgerError(.leaseLost, "this node holds no lease: acquire one before appending")
        }
        let slot = connection, cached = tree, database = self.database, timeout = self.timeout
        let logger = self.logger, loop = eventLoop
        let (first, range) = try await bounded("appending \(entries.count) entries", timeout: timeout, deadlines: deadlines,
                                               onTimeout: { slot.close() }) {
            let connection: PostgresConnection
            if let open = slot.open {
                connection = open
            } else {
                connection = try await Database.connect(database, .writer, timeout: timeout, logger: logger, on: loop)
                slot.set(connection)
            }
            var range: CompactRange
            if let cached {
                range = cached
            } else {
                range = try await TreeStore.loadRightEdge(connection, logger: logger)
            }
            let first = range.size
            let statement = AppendStatement(epoch: Int64(epoch), entries: entries, range: &range)
            try await connection.append(statement, logger: logger)
            return (first, range)
        }
        tree = range
        return first
    }
}

extension PostgresConnection {
    /// Runs `statement` and returns once its rows are committed, or throws.
    ///
    /// PostgresNIO ends a query at its CommandComplete, but in the extended query protocol an
    /// implicit transaction commits later, at the Sync that follows: a backend killed in between,
    /// or a check deferred to commit, rolls back rows whose query had "succeeded". So the append is
    /// followed by a read of its last entry's leaf hash on the same connection, which finds it
    /// only once it has committed. The read is written to the channel right behind the append,
    /// before either answer is awaited (`Task.immediate` runs up to its first suspension, which
    /// comes after its write), so that PostgresNIO sends it on the append's ReadyForQuery without
    /// a round trip of this task: awaited after the append, a confirmation cost a third of a lone
    /// writer's appends per second. Should the read ever go first, it finds nothing and is made
    /// again after the append: the outcome rests on the row being there, not on that order.
    func append(_ statement: AppendStatement, logger: Logger) async throws {
        guard let last = statement.idx.last, let leaf = statement.leaves.last else { return }
        let connection = self, check = CommittedLeafStatement(index: last)
        let appended = Task.immediate { () async throws -> Int64 in
            var count: Int64 = -1
            for try await (e, _) in try await connection.execute(statement, logger: logger) { count = e }
            return count
        }
        let early = Task.immediate { try await connection.committedLeaf(check, logger: logger) }
        let count = try await appended.value
        guard count == Int64(statement.idx.count) else {
            throw LedgerError(.corrupt, "append wrote \(count) rows for \(statement.idx.count) entries")
        }
        var found = try await early.value
        if found == nil { found = try await committedLeaf(check, logger: logger) }
        guard found == leaf else {
            throw LedgerError.unavailable("appending entries up to \(last): the database answered, but the entries did not commit")
        }
    }

    private func committedLeaf(_ check: CommittedLeafStatement, logger: Logger) async throws -> ByteBuffer? {
        for try await leaf in try await execute(check, logger: logger) { return leaf }
        return nil
    }
}

/// The leaf hash of the entry at `index`, as the connection sees it: the check that an append
/// committed (``PostgresConnection/append(_:logger:)``).
struct CommittedLeafStatement: PostgresPreparedStatement {
    static let sql = "SELECT leaf_hash FROM entries WHERE idx = $1"
    typealias Row = ByteBuffer

    var index: Int64

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 1)
        b.append(index)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> ByteBuffer { try row.decode(ByteBuffer.self) }
}

/// The writer's connection, behind a lock.
final class ConnectionSlot: @unchecked Sendable {
    private let lock = NSLock()
    private var connection: PostgresConnection?

    /// The connection, unless there is none or it has closed.
    var open: PostgresConnection? {
        lock.lock()
        defer { lock.unlock() }
        guard let c = connection, !c.isClosed else { return nil }
        return c
    }

    /// Keeps `c`, closing the connection it replaces.
    func set(_ c: PostgresConnection) {
        lock.lock()
        let old = connection
        connection = c
        lock.unlock()
        if let old, old !== c { old.closeNow() }
    }

    /// Closes the connection, if any, without waiting.
    func close() {
        lock.lock()
        let c = connection
        connection = nil
        lock.unlock()
        c?.closeNow()
    }
}

/// The writer's metrics: how long each batch takes to commit, and how many entries it holds.
enum LedgerMetrics {
    static let commit = Metrics.Timer(label: "countersign_ledger_commit_duration_seconds", preferredDisplayUnit: .seconds)
    static let batchEntries = Recorder(label: "countersign_ledger_batch_entries")
}

/// The append of one batch: one statement (so one transaction), prepared once per connection.
/// Entries are inserted in index order, so that the table's rows follow the log; the append
/// trigger (migration 4) checks the whole statement's rows once, after they are in. The subtree
/// hashes the batch completes are inserted by the same statement.
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
    var idx: [Int64] = [], kinds: [String] = [], types: [String] = [], statements: [ByteBuffer] = [], signatures: [ByteBuffer] = []
    var keyIDs: [String] = [], agents: [String] = [], owners: [String] = [], requestIDs: [String] = []
    var fingerprints: [ByteBuffer] = [], leaves: [ByteBuffer] = []
    var nodeLast: [Int64] = [], nodeLevel: [Int16] = [], nodeHash: [ByteBuffer] = []

    /// The append of `entries` at the end of `range`, which it extends by them (their leaves, and
    /// the complete subtrees they close, whose hashes the statement stores).
    init(epoch: Int64, entries: [LedgerEntry], range: inout CompactRange) {
        self.epoch = epoch
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
    }

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

/// The appends waiting for the writer, behind a lock: callers add to it from any thread without
/// entering the writer's actor; the writer's loop sleeps on it when it is empty, and while it
/// gathers a batch.
final class WriteQueue: @unchecked Sendable {
    struct Pending {
        var entries: [LedgerEntry]
        var continuation: CheckedContinuation<[UInt64], any Error>
    }

    private let lock = NSLock()
    private var items: [Pending] = []
    private var head = 0
    private var stopped = false
    /// The writer's loop, asleep until there is work (or, with a target, until that many callers wait).
    private var waiter: CheckedContinuation<Void, Never>?
    private var waiterTarget = 1
    private var generation = 0

    /// Callers waiting.
    var callers: Int {
        lock.lock()
        defer { lock.unlock() }
        return items.count - head
    }

    /// Adds a caller; `false` once the writer has stopped.
    func push(_ p: Pending) -> Bool {
        lock.lock()
        guard !stopped else {
            lock.unlock()
            return false
        }
        items.append(p)
        var wake: CheckedContinuation<Void, Never>?
        if let w = waiter, items.count - head >= waiterTarget {
            waiter = nil
            wake = w
        }
        lock.unlock()
        wake?.resume()
        return true
    }

    /// Takes the waiting callers in order, up to `limit` entries (at least one caller).
    func take(limit: Int) -> [Pending] {
        lock.lock()
        defer { lock.unlock() }
        var batch: [Pending] = []
        var count = 0
        while head < items.count, batch.isEmpty || count + items[head].entries.count <= limit {
            batch.append(items[head])
            count += items[head].entries.count
            head += 1
        }
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        } else if head > 1024 {
            items.removeFirst(head)
            head = 0
        }
        return batch
    }

    /// Returns when a caller waits (at once if one does), or when woken by ``wakeWaiter()``.
    func waitForWork() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            lock.lock()
            if items.count > head || Task.isCancelled {
                lock.unlock()
                c.resume()
                return
            }
            waiter = c
            waiterTarget = 1
            generation += 1
            lock.unlock()
        }
    }

    /// Returns when `target` callers wait, or after `window` (a timer on `loop`), or when woken.
    func gather(target: Int, within window: TimeAmount, on loop: any EventLoop) async {
        var timer: Scheduled<Void>?
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            lock.lock()
            if items.count - head >= target || Task.isCancelled {
                lock.unlock()
                c.resume()
                return
            }
            waiter = c
            waiterTarget = target
            generation += 1
            let mine = generation
            lock.unlock()
            timer = loop.scheduleTask(in: window) { [self] in self.wakeWaiter(generation: mine) }
        }
        timer?.cancel()
    }

    /// Wakes the sleeping loop, if any (cancellation, timer).
    func wakeWaiter(generation expected: Int? = nil) {
        lock.lock()
        var wake: CheckedContinuation<Void, Never>?
        if let w = waiter, expected == nil || expected == generation {
            waiter = nil
            wake = w
        }
        lock.unlock()
        wake?.resume()
    }

    /// Refuses further callers; returns those still waiting (to be failed).
    func stop() -> [Pending] {
        lock.lock()
        stopped = true
        let rest = Array(items[head...])
        items = []
        head = 0
        let w = waiter
        waiter = nil
        lock.unlock()
        w?.resume()
        return rest
    }
}
