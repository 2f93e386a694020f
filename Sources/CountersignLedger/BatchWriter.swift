import CountersignConfig
import CountersignVerify
import Foundation
import Logging
import Metrics

/// The single writer of a ``Ledger``: appends enter a queue; one thread of its own drains it in
/// batches (many statements in one INSERT statement, in arrival order), commits with synchronous
/// commit on, and only then completes each caller with its index. It owns one database connection
/// (``WriterConnection``: libpq, whose answer to a statement comes after its commit) and the right
/// edge of the Merkle tree, so that the subtree hashes each batch completes are written in the
/// same statement as its entries.
///
/// Callers do not wait for the thread: ``submit(_:)`` puts them in a ``WriteQueue`` under a lock,
/// and the thread resumes each one onto the caller's own executor after COMMIT. The thread blocks
/// on the queue while it is empty and on the database's socket while a batch is in flight: one
/// thread wake-up per round trip, none of them queued behind the decisions on Swift's executor.
/// Every batch has a deadline (``Ledger/Options/timeout``): a database that stops answering fails
/// the batch's callers with `unavailable` at the deadline, and the next batch connects again.
final class BatchWriter: @unchecked Sendable {
    private let database: DatabaseSettings
    private let timeout: Duration
    private let batchLimit: Int
    private let logger: Logger

    private let queue = WriteQueue()

    /// Lease and tree state, read by other tasks (``Ledger``), under `state`.
    private let state = NSLock()
    private var _epoch: UInt64?
    /// The right edge of the tree as committed; `nil` when it must be read again from the database.
    private var _tree: CompactRange?
    /// Bumped when the epoch changes: a batch that started under an older one keeps no tree.
    private var generation = 0
    private var started = false

    // The writer thread's own state.
    /// Callers in the last batch (to let them rejoin the next one).
    private var lastBatchCallers = 0
    private var connection: WriterConnection?

    /// How long the loop waits for the callers of the last batch to append again (group commit).
    static let gatherWindow = Duration.microseconds(200)
    /// The commit delay: after a batch of at least `commitDelayFrom` callers, the loop waits up to
    /// `commitDelay` for appends announced as on their way (``Ledger/expectAppend()``), until
    /// `commitDelayCap` callers wait or none is on its way any more. Like PostgreSQL's
    /// `commit_delay` and `commit_siblings`, but only for appends known to be coming, so that a
    /// caller that appends alone, or a few callers that all wait already, never wait for it.
    /// Measured with 64 connections deciding as fast as they can (`docs/performance.md`, seventh
    /// session): batches of 17–21 entries instead of 7–8, PostgreSQL's CPU per decision 31–42 µs
    /// instead of 48–60, and 4,993, 5,142, 4,617 decisions/s against 4,756, 4,668, 4,434 in three
    /// alternating rounds.
    static let commitDelay = Duration.milliseconds(3)
    static let commitDelayFrom = 4
    static let commitDelayCap = 32

    init(database: DatabaseSettings, timeout: Duration, batchLimit: Int, logger: Logger) {
        self.database = database
        self.timeout = timeout
        self.batchLimit = batchLimit
        self.logger = logger
    }

    /// A new epoch drops the cached right edge: another holder may have appended in between.
    func setEpoch(_ epoch: UInt64?) {
        state.lock()
        if epoch != _epoch {
            _tree = nil
            generation += 1
        }
        _epoch = epoch
        state.unlock()
    }

    /// Epoch of the lease this writer holds; `nil` before ``setEpoch(_:)``.
    var epoch: UInt64? {
        state.lock()
        defer { state.unlock() }
        return _epoch
    }

    /// The committed tree size and right edge known to this writer, if any.
    var committedTree: CompactRange? {
        state.lock()
        defer { state.unlock() }
        return _tree
    }

    /// An announcement of an append on its way (``Ledger/expectAppend()``).
    func expect() -> ExpectedAppend {
        queue.expect()
    }

    /// Appends announced and not yet made or withdrawn.
    var appendsExpected: Int { queue.expected }

    /// Queues `entries` (kept together, in order) and waits for their indices, after COMMIT.
    func submit(_ entries: [LedgerEntry], expected: ExpectedAppend? = nil) async throws -> [UInt64] {
        guard !entries.isEmpty else {
            expected?.withdraw()
            return []
        }
        return try await withCheckedThrowingContinuation { (c: CheckedContinuation<[UInt64], any Error>) in
            if !queue.push(WriteQueue.Pending(entries: entries, continuation: c), consuming: expected) {
                c.resume(throwing: LedgerError.unavailable("the ledger writer has stopped"))
            }
        }
    }

    /// Runs the writer's thread until the task is cancelled; then fails what is still queued. Once
    /// stopped, a writer does not start again.
    func run() async {
        guard claimStart() else { return }
        let queue = self.queue
        await withTaskCancellationHandler {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                let thread = Thread { [self] in
                    // Linux names a thread after the one that made it (here a worker of Swift's
                    // executor); name it from inside, for `top -H` and `perf` (15 bytes at most).
                    Thread.current.name = "cs-ledger-write"
                    loop()
                    done.resume()
                }
                thread.start()
            }
        } onCancel: {
            queue.stop()
        }
    }

    private func claimStart() -> Bool {
        state.lock()
        defer { state.unlock() }
        let first = !started
        started = true
        return first
    }

    /// The thread's loop: a batch at a time until the queue stops.
    private func loop() {
        while queue.waitForWork() {
            // Group commit: the callers whose appends the last batch completed usually append again
            // at once; wait for them (at most gatherWindow) to join this batch rather than commit a
            // batch of one and leave them for the next.
            if lastBatchCallers > 1 && queue.callers < lastBatchCallers {
                queue.gather(target: lastBatchCallers, within: Self.gatherWindow)
            }
            if lastBatchCallers >= Self.commitDelayFrom {
                queue.gatherExpected(cap: Self.commitDelayCap, within: Self.commitDelay)
            }
            let batch = queue.take(limit: batchLimit)
            guard !batch.isEmpty else { continue }
            lastBatchCallers = batch.count
            if let e = commit(batch), e.code == .exists, batch.count > 1 {
                // One caller's decision is already in the ledger, and the whole batch rolled back:
                // each caller again on its own, so that only that one is refused.
                for p in batch { commit([p]) }
            }
        }
        for p in queue.drain() { p.continuation.resume(throwing: LedgerError.unavailable("the ledger writer has stopped")) }
        connection?.close()
        connection = nil
    }

    /// Writes `batch` in one transaction and completes its callers: each with its indices, or all
    /// with the error. Returns the error, if any.
    @discardableResult
    private func commit(_ batch: [WriteQueue.Pending]) -> LedgerError? {
        do {
            let entries = batch.count == 1 ? batch[0].entries : batch.flatMap(\.entries)
            let started = ContinuousClock.now
            var next = try write(entries)
            LedgerMetrics.commit.record(duration: ContinuousClock.now - started)
            LedgerMetrics.batchEntries.record(entries.count)
            LedgerMetrics.size.record(Int64(next) + Int64(entries.count))
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
                dropTree()
            }
            for p in batch { p.continuation.resume(throwing: e) }
            if e.code == .unavailable {
                connection?.close()
                connection = nil
            }
            return e
        }
    }

    /// Writes one batch in one statement (its own transaction); returns the first index once it
    /// has committed. Connecting, reading the tree head when it is not cached, and the append share
    /// one deadline.
    private func write(_ entries: [LedgerEntry]) throws -> UInt64 {
        state.lock()
        let epoch = _epoch, cached = _tree, generation = self.generation
        state.unlock()
        guard let epoch else {
            throw LedgerError(.leaseLost, "this node holds no lease: acquire one before appending")
        }
        let deadline = ContinuousClock.now + timeout
        let connection: WriterConnection
        if let open = self.connection, open.isOpen {
            connection = open
        } else {
            self.connection?.close()
            self.connection = nil
            connection = try WriterConnection.open(database, timeout: timeout, deadline: deadline)
            self.connection = connection
        }
        var range = try cached ?? TreeStore.loadRightEdge(connection, timeout: timeout, deadline: deadline)
        let first = range.size
        let statement = AppendStatement(epoch: Int64(epoch), entries: entries, range: &range)
        let what = "appending \(entries.count) entries"
        let rows = try connection.execute(AppendStatement.prepared, statement.parameters, what: what, timeout: timeout, deadline: deadline)
        guard let count = rows.first.flatMap({ PGBinary.decodeInt8($0.first ?? nil) }), count == Int64(entries.count) else {
            throw LedgerError(.corrupt, "append wrote \(rows.first.map { "\($0)" } ?? "no") rows for \(entries.count) entries")
        }
        state.lock()
        if self.generation == generation { _tree = range }
        state.unlock()
        return first
    }

    private func dropTree() {
        state.lock()
        _tree = nil
        state.unlock()
    }
}

/// The writer's metrics: how long each batch takes to commit, how many entries it holds, and the
/// ledger's size once it has committed (``Ledger/ledgerSizeMetric``).
enum LedgerMetrics {
    static let commit = Metrics.Timer(label: "countersign_ledger_commit_duration_seconds", preferredDisplayUnit: .seconds)
    static let batchEntries = Recorder(label: "countersign_ledger_batch_entries")
    static let size = Gauge(label: Ledger.ledgerSizeMetric)
}

/// The append of one batch: one statement (so one transaction), prepared once per connection.
/// Entries are inserted in index order, so that the table's rows follow the log; the append
/// trigger (migration 4) checks the whole statement's rows once, after they are in. The subtree
/// hashes the batch completes are inserted by the same statement. Its parameters are arrays in
/// PostgreSQL's binary format, one per column.
struct AppendStatement {
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
    static let prepared = WriterConnection.Prepared(name: "countersign_append", sql: sql)

    /// The parameters $1…$15.
    let parameters: [[UInt8]]

    /// The append of `entries` at the end of `range`, which it extends by them (their leaves, and
    /// the complete subtrees they close, whose hashes the statement stores).
    init(epoch: Int64, entries: [LedgerEntry], range: inout CompactRange) {
        let n = entries.count
        var idx = PGBinary.Array1D(oid: PGBinary.int8, capacity: 12 * n)
        var kinds = PGBinary.Array1D(oid: PGBinary.text, capacity: 16 * n)
        var types = PGBinary.Array1D(oid: PGBinary.text, capacity: 64 * n)
        var statements = PGBinary.Array1D(oid: PGBinary.bytea, capacity: entries.reduce(0) { $0 + 4 + $1.statement.payload.count })
        var signatures = PGBinary.Array1D(oid: PGBinary.bytea, capacity: 80 * n)
        var keyIDs = PGBinary.Array1D(oid: PGBinary.text, capacity: 40 * n)
        var agents = PGBinary.Array1D(oid: PGBinary.text, capacity: 32 * n)
        var owners = PGBinary.Array1D(oid: PGBinary.text, capacity: 32 * n)
        var requestIDs = PGBinary.Array1D(oid: PGBinary.text, capacity: 48 * n)
        var fingerprints = PGBinary.Array1D(oid: PGBinary.bytea, capacity: 36 * n)
        var leafHashes = PGBinary.Array1D(oid: PGBinary.bytea, capacity: 36 * n)
        var nodeLast = PGBinary.Array1D(oid: PGBinary.int8, capacity: 12 * n)
        var nodeLevel = PGBinary.Array1D(oid: PGBinary.int2, capacity: 6 * n)
        var nodeHash = PGBinary.Array1D(oid: PGBinary.bytea, capacity: 36 * n)
        for e in entries {
            let leaf = Merkle.leafHash(bytes: e.statement.payload)
            let leafIndex = range.size
            idx.append(int8: Int64(leafIndex))
            kinds.append(e.kind.rawValue)
            types.append(e.statement.payloadType)
            statements.append(e.statement.payload)
            signatures.append(e.statement.signature)
            keyIDs.append(e.statement.keyID)
            agents.append(e.agent)
            owners.append(e.owner)
            requestIDs.append(e.requestID ?? "")
            fingerprints.append(e.fingerprint ?? [])
            leafHashes.append(leaf)
            for node in range.append(leafHash: leaf) {
                nodeLast.append(int8: Int64(leafIndex))
                nodeLevel.append(int2: Int16(node.level))
                nodeHash.append(node.hash)
            }
        }
        parameters = [PGBinary.int8(epoch), idx.bytes, kinds.bytes, types.bytes, statements.bytes, signatures.bytes, keyIDs.bytes,
                      agents.bytes, owners.bytes, requestIDs.bytes, fingerprints.bytes, leafHashes.bytes,
                      nodeLast.bytes, nodeLevel.bytes, nodeHash.bytes]
    }
}

/// The appends waiting for the writer, behind a lock: callers add to it from any thread; the
/// writer's thread sleeps on it (a condition variable) while it is empty, and while it gathers a
/// batch.
final class WriteQueue: @unchecked Sendable {
    struct Pending {
        var entries: [LedgerEntry]
        var continuation: CheckedContinuation<[UInt64], any Error>
    }

    private let condition = NSCondition()
    private var items: [Pending] = []
    private var head = 0
    private var stopped = false
    /// Whether the writer sleeps, and for how many waiting callers it wants to be woken.
    private var sleeping = false
    private var wakeAt = 1
    /// Appends announced and not yet queued or withdrawn (``ExpectedAppend``).
    private var announced = 0
    /// Whether the sleeping writer also wants to be woken when no announced append is left.
    private var wakeWhenNoneExpected = false

    /// Appends announced and not yet queued or withdrawn.
    var expected: Int {
        condition.lock()
        defer { condition.unlock() }
        return announced
    }

    /// Announces an append on its way.
    func expect() -> ExpectedAppend {
        condition.lock()
        defer { condition.unlock() }
        announced += 1
        return ExpectedAppend(queue: self)
    }

    /// Withdraws `announcement` unless it was consumed or withdrawn already.
    func withdraw(_ announcement: ExpectedAppend) {
        condition.lock()
        defer { condition.unlock() }
        settle(announcement)
    }

    /// Consumes an open announcement (under the lock); wakes a writer waiting for the last one.
    private func settle(_ announcement: ExpectedAppend?) {
        guard let announcement, announcement.isOpen else { return }
        announcement.isOpen = false
        announced -= 1
        if sleeping && wakeWhenNoneExpected && announced == 0 { condition.signal() }
    }

    /// Whether the writer sleeps on the queue now (for tests that must act while it waits).
    var writerSleeps: Bool {
        condition.lock()
        defer { condition.unlock() }
        return sleeping
    }

    /// Callers waiting.
    var callers: Int {
        condition.lock()
        defer { condition.unlock() }
        return items.count - head
    }

    /// Adds a caller, consuming its announcement if it has one; `false` once the writer has stopped.
    func push(_ p: Pending, consuming announcement: ExpectedAppend? = nil) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        settle(announcement)
        guard !stopped else { return false }
        items.append(p)
        if sleeping && items.count - head >= wakeAt { condition.signal() }
        return true
    }

    /// Takes the waiting callers in order, up to `limit` entries (at least one caller).
    func take(limit: Int) -> [Pending] {
        condition.lock()
        defer { condition.unlock() }
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

    /// Blocks until a caller waits (returns `true`, at once if one does) or the queue stops (`false`).
    func waitForWork() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while items.count == head && !stopped {
            wakeAt = 1
            sleeping = true
            condition.wait()
            sleeping = false
        }
        return !stopped
    }

    /// Blocks until `target` callers wait, or for at most `window`, or until the queue stops.
    func gather(target: Int, within window: Duration) {
        condition.lock()
        defer { condition.unlock() }
        sleep(within: window, wakeAt: target, whenNoneExpected: false) { items.count - head < target }
    }

    /// Blocks while announced appends are on their way, until `cap` callers wait, for at most
    /// `window`, or until the queue stops. Returns at once when none is announced.
    func gatherExpected(cap: Int, within window: Duration) {
        condition.lock()
        defer { condition.unlock() }
        sleep(within: window, wakeAt: cap, whenNoneExpected: true) { announced > 0 && items.count - head < cap }
    }

    /// Sleeps (the lock held) while `keepWaiting` holds, for at most `window`, until the queue
    /// stops; a push wakes it once `wakeAt` callers wait, and the last announced append settled
    /// does too when `whenNoneExpected`.
    private func sleep(within window: Duration, wakeAt: Int, whenNoneExpected: Bool, while keepWaiting: () -> Bool) {
        let until = Date(timeIntervalSinceNow: Double(window.components.seconds) + Double(window.components.attoseconds) / 1e18)
        while keepWaiting() && !stopped {
            self.wakeAt = wakeAt
            wakeWhenNoneExpected = whenNoneExpected
            sleeping = true
            let signalled = condition.wait(until: until)
            sleeping = false
            wakeWhenNoneExpected = false
            if !signalled { break }
        }
    }

    /// Refuses further callers and wakes the writer, which then fails those still waiting (``drain()``).
    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    /// Removes and returns the callers still waiting.
    func drain() -> [Pending] {
        condition.lock()
        defer { condition.unlock() }
        let rest = Array(items[head...])
        items = []
        head = 0
        return rest
    }
}

/// An append announced as on its way (``Ledger/expectAppend()``): consumed by the append that
/// passes it, or withdrawn.
public final class ExpectedAppend: @unchecked Sendable {
    private let queue: WriteQueue
    /// Guarded by the queue's lock.
    fileprivate var isOpen = true

    fileprivate init(queue: WriteQueue) {
        self.queue = queue
    }

    /// Withdraws the announcement if the append was not made (nothing is coming); does nothing
    /// after the append. Call it in a `defer` where the announcement is made.
    public func withdraw() {
        queue.withdraw(self)
    }
}
