import CountersignTestSupport
import CountersignConfig
import CountersignVerify
import Foundation
import PostgresNIO
import Testing
@testable import CountersignLedger

/// Against the real PostgreSQL cluster of the dev environment; each test makes its own database.
@Suite(.serialized) struct LedgerDatabaseTests {
    @Test func migrationsAreIdempotentAndVersioned() async throws {
        try await TestDatabase.withFresh { db in
            let again = try await Ledger.migrate(database: db.settings, logger: TestEnvironment.logger)
            #expect(again.isEmpty)
        }
    }

    @Test func appendsGetGaplessIndicesAndProofsVerify() async throws {
        try await TokenTestSigner.with { signer in
            try await TestDatabase.withFresh { db in
                try await db.withLedger(signer: signer) { ledger in
                    var leaves: [[UInt8]] = []
                    var index: UInt64 = 0
                    // Single appends and batches mixed.
                    for n in 0..<300 {
                        if n % 7 == 0 {
                            var batch: [LedgerEntry] = []
                            for j in 0..<3 { batch.append(try await signer.entry(n * 10 + j)) }
                            let got = try await ledger.append(contentsOf: batch)
                            #expect(got == [index, index + 1, index + 2])
                            index += 3
                            leaves += batch.map { Merkle.leafHash($0.statement.payload) }
                        } else {
                            let e = try await signer.entry(n * 10)
                            #expect(try await ledger.append(e) == index)
                            index += 1
                            leaves.append(Merkle.leafHash(e.statement.payload))
                        }
                    }
                    let size = try await ledger.size()
                    #expect(size == index)
                    var roots: [[UInt8]] = [Merkle.emptyRoot]
                    var range = CompactRange()
                    for l in leaves {
                        range.append(leafHash: l)
                        roots.append(range.root)
                    }
                    #expect(try await ledger.rootHash(treeSize: size) == roots[Int(size)])
                    for n in 1...300 {
                        let ms: [Int] = n <= 40 ? Array(0..<n) : [0, n / 3, n / 2, n - 1, Int.random(in: 0..<n)]
                        for m in ms {
                            let proof = try await ledger.proveInclusion(index: UInt64(m), treeSize: UInt64(n))
                            try Merkle.verifyInclusion(leafHash: leaves[m], index: UInt64(m), treeSize: UInt64(n), proof: proof, root: roots[n])
                        }
                        let f = Int.random(in: 1...n)
                        let cproof = try await ledger.proveConsistency(first: UInt64(f), second: UInt64(n))
                        try Merkle.verifyConsistency(firstSize: UInt64(f), secondSize: UInt64(n), firstRoot: roots[f], secondRoot: roots[n], proof: cproof)
                    }
                    // Out of range is a typed error.
                    for (i, n) in [(size, size), (0, size + 1), (5, 3)] {
                        await #expect { try await ledger.proveInclusion(index: i, treeSize: n) } throws: { ($0 as? LedgerError)?.code == .outOfRange }
                    }
                    await #expect { try await ledger.proveConsistency(first: 0, second: 3) } throws: { ($0 as? LedgerError)?.code == .outOfRange }
                    await #expect { try await ledger.proveConsistency(first: 3, second: size + 1) } throws: { ($0 as? LedgerError)?.code == .outOfRange }
                    // A checkpoint on demand, then the whole ledger verifies, from the database and from an export.
                    let cp = try await ledger.checkpoint()
                    #expect(cp.treeSize == size)
                    #expect(cp.rootHash == roots[Int(size)])
                    let got = try await ledger.getCheckpoint()
                    #expect(got == cp)
                    let parsed = try Checkpoint(parsing: got.body)
                    #expect(parsed.origin == "test.local/ledger" && parsed.treeSize == size)
                    try signer.trusted.verify(got.statement)
                    let report = try await LedgerAudit.verifyDatabase(database: db.settings, trustedKeys: signer.trusted, origin: "test.local/ledger", logger: TestEnvironment.logger)
                    #expect(report.problem == nil)
                    #expect(report.entries == size && report.checkpoints == 1)
                    // Trusting another key of the same token instead, the first entry already fails.
                    let stranger = try await signer.newKey()
                    let untrusted = try await LedgerAudit.verifyDatabase(database: db.settings, trustedKeys: stranger.trusted, origin: "test.local/ledger", logger: TestEnvironment.logger)
                    #expect(untrusted.problem?.index == 0)
                    let path = NSTemporaryDirectory() + "ledger-export-\(UUID()).txt"
                    _ = FileManager.default.createFile(atPath: path, contents: nil)
                    let handle = try #require(FileHandle(forWritingAtPath: path))
                    let exported = try await LedgerAudit.export(database: db.settings, to: handle, logger: TestEnvironment.logger)
                    try handle.close()
                    #expect(exported.entries == size)
                    let fileReport = try LedgerAudit.verifyFile(path: path, trustedKeys: signer.trusted, origin: "test.local/ledger")
                    #expect(fileReport.problem == nil)
                    #expect(fileReport.root == roots[Int(size)])
                    try? FileManager.default.removeItem(atPath: path)
                }
            }
        }
    }

    @Test func latestFindsTheNewestEntryOfAKindForARequest() async throws {
        try await TokenTestSigner.with { signer in
            try await TestDatabase.withFresh { db in
                try await db.withLedger { ledger in
                    let first = try await signer.entry(1, requestID: "r-1")
                    let i1 = try await ledger.append(first)
                    _ = try await ledger.append(try await signer.entry(2, kind: .refusal, requestID: "r-1"))
                    let refusal = try await signer.entry(3, kind: .refusal, requestID: "r-1")
                    let i3 = try await ledger.append(refusal)
                    _ = try await ledger.append(try await signer.entry(4, requestID: "r-2"))
                    let latest = try #require(try await ledger.latest(kind: .decision, requestID: "r-1"))
                    #expect(latest.index == i1)
                    #expect(latest.statement == first.statement)
                    #expect(latest.leafHash == Merkle.leafHash(first.statement.payload))
                    #expect(try await ledger.latest(kind: .refusal, requestID: "r-1")?.index == i3)
                    #expect(try await ledger.latest(kind: .execution, requestID: "r-1") == nil)
                    #expect(try await ledger.latest(kind: .decision, requestID: "nope") == nil)
                    #expect(try await ledger.entry(at: i3).statement == refusal.statement)
                }
            }
        }
    }

    @Test func aSecondDecisionForARequestIsRefusedAloneEvenInABatch() async throws {
        try await TokenTestSigner.with { signer in
            try await TestDatabase.withFresh { db in
                try await db.withLedger { ledger in
                    #expect(try await ledger.append(try await signer.entry(1, requestID: "r-1")) == 0)
                    await #expect { try await ledger.append(try await signer.entry(2, requestID: "r-1")) } throws: {
                        ($0 as? LedgerError)?.code == .exists && ($0 as? LedgerError)?.code.wireStatus == "ALREADY_EXISTS"
                    }
                    // Concurrent appends share batches: the one duplicate among them is refused, and
                    // only it; the others get gapless indices.
                    var entries: [LedgerEntry] = []
                    for n in 0..<40 { entries.append(try await signer.entry(100 + n, requestID: n == 17 ? "r-1" : "c-\(n)")) }
                    let results = await withTaskGroup(of: (Int, Result<UInt64, LedgerError>).self) { group in
                        for (n, e) in entries.enumerated() {
                            group.addTask {
                                do { return (n, .success(try await ledger.append(e))) } catch { return (n, .failure(error as! LedgerError)) }
                            }
                        }
                        var all: [Int: Result<UInt64, LedgerError>] = [:]
                        for await (n, r) in group { all[n] = r }
                        return all
                    }
                    var indices: [UInt64] = []
                    for (n, r) in results {
                        switch r {
                        case .success(let i):
                            #expect(n != 17)
                            indices.append(i)
                        case .failure(let e):
                            #expect(n == 17 && e.code == .exists, "entry \(n): \(e)")
                        }
                    }
                    #expect(indices.sorted() == Array(1...39))
                    #expect(try await ledger.size() == 40)
                    // Other kinds may repeat a request id (refusals, execution reports).
                    _ = try await ledger.append(try await signer.entry(200, kind: .refusal, requestID: "r-1"))
                    _ = try await ledger.append(try await signer.entry(201, kind: .refusal, requestID: "r-1"))
                    #expect(try await ledger.size() == 42)
                }
            }
        }
    }

    @Test func writerAndReaderCannotChangeHistory() async throws {
        try await TokenTestSigner.with { signer in
            try await TestDatabase.withFresh { db in
                try await db.withLedger(signer: signer) { ledger in
                    for n in 0..<4 { _ = try await ledger.append(try await signer.entry(n)) }
                    try await ledger.checkpoint()
                }
                let attempts = [
                    "UPDATE entries SET owner = 'mallory' WHERE idx = 1",
                    "DELETE FROM entries WHERE idx = 3",
                    "TRUNCATE entries",
                    "UPDATE merkle_nodes SET hash = hash",
                    "DELETE FROM merkle_nodes",
                    "TRUNCATE merkle_nodes",
                    "UPDATE checkpoints SET key_id = 'x'",
                    "DELETE FROM checkpoints",
                    "TRUNCATE checkpoints",
                    "DELETE FROM lease",
                    "TRUNCATE lease",
                    "UPDATE lease SET epoch = 0",
                    "SET session_replication_role = replica",
                ]
                for role in [DatabaseRole.writer, .reader] {
                    for sql in attempts {
                        await #expect(throws: (any Error).self, "\(role) ran \(sql)") { try await db.run(as: role, sql) }
                    }
                }
                // The owner may bypass privileges, but the ENABLE ALWAYS triggers still refuse, even as a replica session.
                for sql in ["UPDATE entries SET owner = 'mallory' WHERE idx = 1", "DELETE FROM entries WHERE idx = 3", "TRUNCATE entries"] {
                    await #expect(throws: (any Error).self, "owner ran \(sql)") { try await db.run(as: .owner, sql) }
                }
                await #expect(throws: (any Error).self) {
                    try await db.superuser("SET session_replication_role = replica; DELETE FROM entries WHERE idx = 3")
                }
                let report = try await LedgerAudit.verifyDatabase(database: db.settings, trustedKeys: signer.trusted, origin: nil, logger: TestEnvironment.logger)
                #expect(report.problem == nil && report.entries == 4)
            }
        }
    }

    @Test func staleEpochIsRejectedByTheDatabase() async throws {
        try await TokenTestSigner.with { signer in
            try await TestDatabase.withFresh { db in
                try await db.withTwoNodes { a, b in
                    // No lease: refused before the database is asked.
                    await #expect { try await a.append(try await signer.entry(0)) } throws: { ($0 as? LedgerError)?.code == .leaseLost }
                    let la = try await a.acquireLease(holder: "node-a", ttl: .milliseconds(300))
                    #expect(try await a.append(try await signer.entry(1)) == 0)
                    // B cannot take a live lease.
                    await #expect { try await b.acquireLease(holder: "node-b", ttl: .seconds(30)) } throws: { ($0 as? LedgerError)?.code == .leaseLost }
                    try await Task.sleep(for: .milliseconds(400))
                    let lb = try await b.acquireLease(holder: "node-b", ttl: .seconds(30))
                    #expect(lb.epoch == la.epoch + 1)
                    // A still believes it holds epoch la.epoch: the database refuses it.
                    await #expect { try await a.append(try await signer.entry(2)) } throws: { ($0 as? LedgerError)?.code == .staleEpoch }
                    await #expect { try await a.renewLease(ttl: .seconds(1)) } throws: { ($0 as? LedgerError)?.code == .leaseLost }
                    #expect(try await b.append(try await signer.entry(3)) == 1)
                    // Directly in SQL as the writer: the trigger checks every row of a statement.
                    let leaf = "'\\x\(Hex.encode(Merkle.leafHash(Array("x".utf8))))'::bytea"
                    func insert(_ rows: [(idx: Int, epoch: UInt64)]) async throws {
                        let values = rows.map { "(\($0.idx), 'decision', 't', 'x'::bytea, ''::bytea, 'k', 'a', 'o', \($0.epoch), \(leaf))" }
                        do {
                            try await db.run(as: .writer, """
                                INSERT INTO entries (idx, kind, payload_type, statement, signature, key_id, agent, owner, epoch, leaf_hash)
                                VALUES \(values.joined(separator: ", "))
                                """)
                        } catch {
                            throw Database.map(error, "insert")
                        }
                    }
                    func refusal(_ rows: [(idx: Int, epoch: UInt64)]) async -> LedgerError.Code? {
                        do {
                            try await insert(rows)
                            return nil
                        } catch {
                            return (error as? LedgerError)?.code
                        }
                    }
                    // A stale epoch, alone or beside a current one.
                    #expect(await refusal([(2, la.epoch)]) == .staleEpoch)
                    #expect(await refusal([(2, lb.epoch), (3, la.epoch)]) == .staleEpoch)
                    // A gap, even with the right epoch: after the last index, or inside the statement.
                    #expect(await refusal([(5, lb.epoch)]) == .conflict)
                    #expect(await refusal([(2, lb.epoch), (4, lb.epoch)]) == .conflict)
                    // An index already taken.
                    #expect(await refusal([(1, lb.epoch)]) == .conflict)
                    #expect(try await b.size() == 2)
                    let lease = try await b.currentLease()
                    #expect(lease.holder == "node-b" && lease.epoch == lb.epoch && lease.isLive)
                    let renewed = try await b.renewLease(ttl: .seconds(60))
                    #expect(renewed.expiresAt > lb.expiresAt)
                    // Given back, the lease is free at once (not after its 60 s), and B's appends stop.
                    try await b.releaseLease()
                    await #expect { try await b.append(try await signer.entry(4)) } throws: { ($0 as? LedgerError)?.code == .leaseLost }
                    #expect(try await a.acquireLease(holder: "node-a", ttl: .seconds(30)).epoch == lb.epoch + 1)
                    #expect(try await a.append(try await signer.entry(5)) == 2)
                }
            }
        }
    }

    /// A node that takes the lease again after another holder appended starts from the tree as
    /// committed, not from the right edge it had cached: its first append succeeds.
    @Test func aNewLeaseStartsFromTheCommittedTree() async throws {
        try await TokenTestSigner.with { signer in
            try await TestDatabase.withFresh { db in
                try await db.withTwoNodes { a, b in
                    try await a.acquireLease(holder: "node-a", ttl: .milliseconds(300))
                    #expect(try await a.append(try await signer.entry(0)) == 0)
                    try await Task.sleep(for: .milliseconds(400))
                    try await b.acquireLease(holder: "node-b", ttl: .seconds(30))
                    #expect(try await b.append(try await signer.entry(1)) == 1)
                    try await b.releaseLease()
                    try await a.acquireLease(holder: "node-a", ttl: .seconds(30))
                    #expect(try await a.append(try await signer.entry(2)) == 2)
                    let report = try await LedgerAudit.verifyDatabase(database: db.settings, trustedKeys: signer.trusted, origin: nil, logger: TestEnvironment.logger)
                    #expect(report.problem == nil && report.entries == 3)
                }
            }
        }
    }

    /// A node that takes the lease checkpoints the entries the previous holder left uncovered,
    /// without waiting for an append of its own (which, on a quiet ledger, may never come).
    @Test(.timeLimit(.minutes(1))) func aNewHolderCheckpointsWhatThePreviousOneLeftUncovered() async throws {
        try await TokenTestSigner.with { signer in
            try await TestDatabase.withFresh { db in
                let previous = try Ledger(database: db.settings, logger: TestEnvironment.logger)  // no signer: no checkpoints
                try await previous.withRunning {
                    try await previous.acquireLease(holder: "a", ttl: .seconds(60))
                    for n in 0..<5 { _ = try await previous.append(try await signer.entry(n)) }
                    try await previous.releaseLease()
                }
                let settings = LedgerSettings(origin: "test.local/ledger", checkpointIntervalMs: 50)
                let next = try Ledger(database: db.settings, settings: settings, signer: signer, logger: TestEnvironment.logger)
                try await next.withRunning {
                    try await next.acquireLease(holder: "b", ttl: .seconds(60))
                    var covered: UInt64 = 0
                    for _ in 0..<100 where covered < 5 {
                        try await Task.sleep(for: .milliseconds(50))
                        covered = (try? await next.getCheckpoint())?.treeSize ?? 0
                    }
                    #expect(covered == 5)
                    let cp = try await next.getCheckpoint()
                    try signer.trusted.verify(cp.statement)
                    #expect(cp.rootHash == (try await next.rootHash(treeSize: 5)))
                    #expect(try await db.checkpoints().count == 1)  // once, not at every tick
                }
            }
        }
    }

    @Test func deadDatabaseGivesAClearErrorQuickly() async throws {
        var settings = TestEnvironment.settings(database: "countersign")
        settings.endpoint = .unixSocket(directory: "/nonexistent-\(UUID())", port: 5432)
        let ledger = try Ledger(database: settings, options: .init(timeout: .seconds(1)), logger: TestEnvironment.logger)
        let task = Task { await ledger.run() }
        defer { task.cancel() }
        let start = ContinuousClock.now
        await #expect { try await ledger.acquireLease(holder: "x", ttl: .seconds(5)) } throws: { ($0 as? LedgerError)?.code == .unavailable }
        await #expect { try await ledger.getCheckpoint() } throws: { ($0 as? LedgerError)?.code == .unavailable }
        #expect(ContinuousClock.now - start < .seconds(5))
    }

    /// A read through the pool only times out when no connection can be made; a new connection
    /// says why, naming the database's address, the role and the server's own words.
    @Test func aConnectionProblemIsNamed() async throws {
        let good = TestEnvironment.settings(database: "countersign")
        let ledger = try Ledger(database: good, options: .init(timeout: .seconds(2)), logger: TestEnvironment.logger)
        #expect(await ledger.connectionProblem() == nil)

        let wrong = FileManager.default.temporaryDirectory.appendingPathComponent("cs-wrong-\(UUID())").path
        try "not-the-password".write(toFile: wrong, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: wrong) }
        var refused = good
        refused.writer = DatabaseCredentials(user: good.writer.user, password: .file(wrong))
        let login = await (try Ledger(database: refused, options: .init(timeout: .seconds(2)), logger: TestEnvironment.logger)).connectionProblem()
        #expect(login?.code == .unavailable)
        #expect(login?.message.contains("28P01") == true, "\(String(describing: login))")
        #expect(login?.message.contains("password authentication failed for user \"\(good.writer.user)\"") == true, "\(String(describing: login))")
        #expect(login?.message.contains(good.socketPath!) == true, "\(String(describing: login))")

        var nowhere = good
        nowhere.endpoint = .unixSocket(directory: "/nonexistent-\(UUID())", port: 5432)
        let socket = await (try Ledger(database: nowhere, options: .init(timeout: .seconds(2)), logger: TestEnvironment.logger)).connectionProblem()
        #expect(socket?.code == .unavailable)
        #expect(socket?.message.contains(nowhere.socketPath!) == true, "\(String(describing: socket))")
        #expect(socket?.message.contains("No such file or directory") == true, "\(String(describing: socket))")
    }

    /// A read whose query hangs ends with `unavailable` at its deadline, without waiting for the
    /// query; the pool goes on serving reads.
    @Test func aReadThatHangsEndsAtItsDeadline() async throws {
        try await TestDatabase.withFresh { db in
            let ledger = try Ledger(database: db.settings, role: .reader, options: .init(timeout: .milliseconds(500)), logger: TestEnvironment.logger)
            try await ledger.withRunning { () async throws in
                let start = ContinuousClock.now
                await #expect {
                    try await ledger.read("sleeping") { c, l in _ = try await c.query("SELECT pg_sleep(3)", logger: l) }
                } throws: { ($0 as? LedgerError)?.code == .unavailable }
                #expect(ContinuousClock.now - start < .milliseconds(1500))
                #expect(try await ledger.size() == 0)
            }
        }
    }

    /// A query written to a connection whose channel has closed is never answered by PostgresNIO
    /// (nothing fails its promise once the channel's handlers are gone). ``bounded`` ends it at its
    /// deadline all the same, and runs the timeout's clean-up once.
    @Test(.timeLimit(.minutes(1))) func aQueryOnAConnectionClosedUnderItEndsAtItsDeadline() async throws {
        try await TestDatabase.withFresh { db in
            let c = try await Database.connect(db.settings, .writer, timeout: .seconds(5), logger: TestEnvironment.logger)
            var backend: Int32 = 0
            for try await (pid,) in try await c.query("SELECT pg_backend_pid()", logger: TestEnvironment.logger).decode((Int32,).self) {
                backend = pid
            }
            try await db.superuser("SELECT pg_terminate_backend(\(backend))")
            try await c.closeFuture.get()
            try await Task.sleep(for: .milliseconds(50))  // the channel's handlers leave its pipeline
            let timeouts = Counter()
            let start = ContinuousClock.now
            await #expect(throws: (any Error).self) {
                try await bounded("a query on a closed connection", timeout: .milliseconds(300), onTimeout: { _ = timeouts.next() }) {
                    try await c.query("SELECT 1", logger: TestEnvironment.logger)
                }
            }
            #expect(ContinuousClock.now - start < .milliseconds(1500))
            // 2 when the deadline ended it (always, with PostgresNIO 1.33.2), 1 if PostgresNIO failed it first.
            #expect(timeouts.next() <= 2)
        }
    }

    /// ``bounded`` does not wait for an operation that ignores cancellation: the caller has its
    /// `unavailable` at the deadline (with the ledger's reaper, and with a timer of its own).
    @Test(.timeLimit(.minutes(1))) func aBoundedOperationThatNeverEndsFailsAtItsDeadline() async throws {
        let stuck = Stuck()
        let deadlines = Deadlines()
        let reaper = Task { await deadlines.run(every: .milliseconds(10)) }
        defer { reaper.cancel(); stuck.release() }
        for reaped in [false, true] {
            let timeouts = Counter()
            let start = ContinuousClock.now
            await #expect {
                try await bounded("waiting", timeout: .milliseconds(200), deadlines: reaped ? deadlines : nil,
                                  onTimeout: { _ = timeouts.next() }) { await stuck.wait() }
            } throws: { ($0 as? LedgerError)?.code == .unavailable }
            let elapsed = ContinuousClock.now - start
            #expect(elapsed >= .milliseconds(200) && elapsed < .milliseconds(1000))
            #expect(timeouts.next() == 2)  // the deadline's clean-up ran exactly once
        }
    }

    /// The writer's database connection is killed 40 times while eight callers append:
    /// every append ends (committed, or refused with `unavailable` or `conflict`) within twice the
    /// ledger's timeout and a margin, the writer appends again once the killing stops, and the
    /// ledger verifies with every committed index in it.
    @Test(.timeLimit(.minutes(1))) func theWriterRecoversWhenItsConnectionIsKilledMidAppend() async throws {
        try await TokenTestSigner.with { signer in
            try await TestDatabase.withFresh { db in
                let ledger = try Ledger(database: db.settings, options: .init(timeout: .seconds(1)), logger: TestEnvironment.logger)
                try await ledger.withRunning {
                    try await ledger.acquireLease(holder: "test-node", ttl: .seconds(900))
                    let killingDone = Flag()
                    let killer = Task {
                        for _ in 0..<40 {
                            try? await db.superuser("""
                                SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                                WHERE datname = current_database() AND usename = 'countersign_writer' AND pid <> pg_backend_pid()
                                """)
                            try? await Task.sleep(for: .milliseconds(Int.random(in: 5...40)))
                        }
                        killingDone.set()
                    }
                    let outcomes = try await withThrowingTaskGroup(of: [(UInt64?, Duration)].self) { group in
                        for w in 0..<8 {
                            group.addTask {
                                var got: [(UInt64?, Duration)] = []
                                var n = 0
                                while !killingDone.isSet {
                                    n += 1
                                    let entry = try await signer.entry(w * 100_000 + n)
                                    let start = ContinuousClock.now
                                    do {
                                        got.append((try await ledger.append(entry), ContinuousClock.now - start))
                                    } catch let e as LedgerError where e.code == .unavailable || e.code == .conflict {
                                        got.append((nil, ContinuousClock.now - start))
                                    }
                                }
                                return got
                            }
                        }
                        var all: [(UInt64?, Duration)] = []
                        for try await g in group { all += g }
                        return all
                    }
                    await killer.value
                    #expect(outcomes.contains { $0.0 == nil }, "no append failed: the killing missed the writer")
                    let slowest = outcomes.map(\.1).max() ?? .zero
                    // A caller may wait for the batch before its own: two deadlines of 1 s, and a margin
                    // for a slow, busy machine. The writer before the fix never answered at all.
                    #expect(slowest < .seconds(5), "an append took \(slowest)")
                    let committed = outcomes.compactMap(\.0)
                    #expect(Set(committed).count == committed.count)
                    // Once the database is left alone, appends go through again.
                    var after: UInt64?
                    for _ in 0..<50 where after == nil {
                        after = try? await ledger.append(try await signer.entry(99_999))
                        if after == nil { try await Task.sleep(for: .milliseconds(100)) }
                    }
                    let last = try #require(after)
                    #expect(committed.allSatisfy { $0 < last })
                    let report = try await LedgerAudit.verifyDatabase(database: db.settings, trustedKeys: signer.trusted,
                                                                      origin: "test.local/ledger", logger: TestEnvironment.logger)
                    #expect(report.problem == nil)
                    #expect(report.entries == last + 1)
                }
            }
        }
    }

    /// An append whose transaction fails at COMMIT is not reported as appended. The implicit
    /// transaction of a statement commits at the Sync that follows its CommandComplete; a deferred
    /// constraint trigger fails exactly there (as a backend killed at that moment does, which the
    /// test above once caught as two callers told the same index). When the writer was on
    /// PostgresNIO, which ends a query at its CommandComplete, and did not yet confirm its commits,
    /// this append returned index 1 for a row that was never written.
    @Test(.timeLimit(.minutes(1))) func anAppendThatFailsAtCommitIsNotReported() async throws {
        try await TokenTestSigner.with { signer in
            try await TestDatabase.withFresh { db in
                try await db.superuser(statements: ["""
                    CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN
                        IF NEW.request_id = 'refused-at-commit' THEN RAISE EXCEPTION 'refused at commit'; END IF;
                        RETURN NULL;
                    END $$
                    """, """
                    CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON entries
                        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit()
                    """])
                let ledger = try Ledger(database: db.settings, options: .init(timeout: .seconds(2)), logger: TestEnvironment.logger)
                try await ledger.withRunning {
                    try await ledger.acquireLease(holder: "test-node", ttl: .seconds(900))
                    #expect(try await ledger.append(try await signer.entry(0)) == 0)
                    // libpq reports the error at commit as the statement's.
                    await #expect {
                        try await ledger.append(try await signer.entry(1, requestID: "refused-at-commit"))
                    } throws: { ($0 as? LedgerError)?.code == .unavailable }
                    #expect(try await ledger.size() == 1)
                    // The writer goes on from what was committed.
                    #expect(try await ledger.append(try await signer.entry(2)) == 1)
                    let report = try await LedgerAudit.verifyDatabase(database: db.settings, trustedKeys: signer.trusted,
                                                                      origin: "test.local/ledger", logger: TestEnvironment.logger)
                    #expect(report.problem == nil)
                    #expect(report.entries == 2)
                }
            }
        }
    }

    /// An append that the database holds up (its table locked by another session) ends with
    /// `unavailable` at the writer's deadline, without waiting for the database; once the lock is
    /// gone, the writer appends again (on a new connection) from what was committed.
    @Test(.timeLimit(.minutes(1))) func anAppendThatHangsEndsAtItsDeadline() async throws {
        try await TokenTestSigner.with { signer in
            try await TestDatabase.withFresh { db in
                let ledger = try Ledger(database: db.settings, options: .init(timeout: .milliseconds(500)), logger: TestEnvironment.logger)
                try await ledger.withRunning {
                    try await ledger.acquireLease(holder: "test-node", ttl: .seconds(900))
                    #expect(try await ledger.append(try await signer.entry(0)) == 0)
                    let locked = Task {
                        try await db.superuser(statements: ["BEGIN", "LOCK TABLE entries IN ACCESS EXCLUSIVE MODE", "SELECT pg_sleep(2)", "COMMIT"])
                    }
                    try await Task.sleep(for: .milliseconds(300))
                    let start = ContinuousClock.now
                    await #expect {
                        try await ledger.append(try await signer.entry(1))
                    } throws: { ($0 as? LedgerError)?.code == .unavailable }
                    let waited = ContinuousClock.now - start
                    #expect(waited >= .milliseconds(450) && waited < .milliseconds(1500), "the append failed after \(waited)")
                    try await locked.value
                    #expect(try await ledger.append(try await signer.entry(2)) == 1)
                    #expect(try await ledger.size() == 2)
                }
            }
        }
    }

    /// Eight concurrent writers append 10,000 entries each while the checkpointer runs: the indices
    /// are gapless and unique, every checkpoint taken along the way is consistent with the final
    /// tree, and the whole ledger verifies.
    @Test func eightConcurrentWritersStayGaplessAndConsistent() async throws {
        try await TokenTestSigner.with { signer in
            try await TestDatabase.withFresh { db in
                let settings = LedgerSettings(origin: "test.local/ledger", checkpointIntervalMs: 50)
                try await db.withLedger(signer: signer, settings: settings) { ledger in
                    let perWriter = 10_000
                    let indices = try await withThrowingTaskGroup(of: [UInt64].self) { group in
                        for w in 0..<8 {
                            group.addTask {
                                var got: [UInt64] = []
                                got.reserveCapacity(perWriter)
                                for n in 0..<perWriter {
                                    got.append(try await ledger.append(try await signer.entry(w * perWriter + n)))
                                }
                                #expect(got == got.sorted())
                                return got
                            }
                        }
                        var all: [UInt64] = []
                        for try await g in group { all += g }
                        return all
                    }
                    #expect(indices.count == 80_000)
                    #expect(indices.sorted() == Array(0..<80_000))
                    try await ledger.checkpoint()
                    let size = try await ledger.size()
                    #expect(size == 80_000)
                    let finalRoot = try await ledger.rootHash(treeSize: size)
                    let checkpoints = try await db.checkpoints()
                    #expect(checkpoints.count >= 3)
                    for cp in checkpoints {
                        try signer.trusted.verify(cp.statement)
                        let proof = try await ledger.proveConsistency(first: max(cp.treeSize, 1), second: size)
                        if cp.treeSize > 0 {
                            try Merkle.verifyConsistency(firstSize: cp.treeSize, secondSize: size, firstRoot: cp.rootHash, secondRoot: finalRoot, proof: proof)
                        }
                    }
                    let report = try await LedgerAudit.verifyDatabase(database: db.settings, trustedKeys: signer.trusted, origin: "test.local/ledger", logger: TestEnvironment.logger)
                    #expect(report.problem == nil)
                    #expect(report.entries == 80_000 && report.checkpoints == checkpoints.count)
                }
            }
        }
    }
}

extension TestDatabase {
    func checkpoints() async throws -> [StoredCheckpoint] {
        let c = try await Database.connect(settings, .reader, timeout: .seconds(10), logger: TestEnvironment.logger)
        defer { Task { try? await c.close() } }
        var out: [StoredCheckpoint] = []
        let rows = try await c.query("SELECT body, tree_size, root_hash, payload_type, signature, key_id, epoch FROM checkpoints ORDER BY tree_size", logger: TestEnvironment.logger)
        for try await (b, n, r, t, s, k, e) in rows.decode((ByteBuffer, Int64, ByteBuffer, String, ByteBuffer, String, Int64).self) {
            out.append(StoredCheckpoint(body: b.bytes, treeSize: UInt64(n), rootHash: r.bytes, payloadType: t, signature: s.bytes, keyID: k, epoch: UInt64(e)))
        }
        return out
    }
}

/// An operation that waits until released, and ignores cancellation.
final class Stuck: @unchecked Sendable {
    private let lock = NSLock()
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var released = false

    func wait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            lock.lock()
            if released {
                lock.unlock()
                c.resume()
                return
            }
            waiters.append(c)
            lock.unlock()
        }
    }

    func release() {
        lock.lock()
        released = true
        let w = waiters
        waiters = []
        lock.unlock()
        for c in w { c.resume() }
    }
}
