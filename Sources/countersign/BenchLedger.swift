import ArgumentParser
import CountersignConfig
import CountersignLedger
import CountersignVerify
import Crypto
import Foundation
import Logging

/// `countersign ledger bench` (hidden): durable append throughput, proof time at a large tree and
/// verification speed, against a scratch database. `scripts/bench-ledger` runs it beside pgbench.
///
/// The statements are signed with a P-256 key made in memory for the run (a benchmark fixture,
/// not a signer: the product signs with the token).
struct BenchLedger: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmark the ledger (scratch database; see scripts/bench-ledger).", shouldDisplay: false)
    @OptionGroup var config: ConfigOption
    @Option(name: .long, help: "Scratch database (must exist, migrated). Default countersign_bench.") var database = "countersign_bench"
    @Option(name: .long, help: "Entries in the tree for proof and verify timing.") var entries = 1_000_000
    @Option(name: .long, help: "Seconds per append phase.") var seconds = 10.0
    @Option(name: .long, help: "Entries per batch in the batched phase.") var batch = 1000
    @Option(name: .long, help: "Phases, comma-separated: unbatched, batched, concurrent8, concurrent64, fill (up to --entries, distinct statements), proofs, verify (both fill first if needed).")
    var phases = "unbatched,batched,concurrent8,concurrent64,fill,proofs,verify"

    func run() async throws {
        var cfg = try LedgerCommand.load(config)
        cfg.database.database = database
        let logger = LedgerCommand.logger
        // The same fixture key on every run, so that phases run as separate processes verify together.
        let key = try P256.Signing.PrivateKey(rawRepresentation: Array(SHA256.hash(data: Array("countersign ledger bench fixture".utf8))))
        let spki = Array(key.publicKey.derRepresentation)
        let vk = try VerificationKey(spkiDER: spki)
        // Sign a pool of statements up front (in parallel) so the append phases measure the ledger.
        @Sendable func sign(_ n: Int) -> LedgerEntry {
            let payload = Array("bench statement \(n) ".utf8) + Array(repeating: UInt8(truncatingIfNeeded: n), count: 160)
            let sig = try! key.signature(for: SHA256.hash(data: DSSE.pae(payloadType: PayloadType.decision, payload: payload)))
            return LedgerEntry(kind: .decision, statement: SignedStatement(payloadType: PayloadType.decision, payload: payload,
                                                                          signature: Array(sig.derRepresentation), keyID: vk.keyID),
                               agent: "bench", owner: "bench@example", requestID: "bench-\(n)")
        }
        let selected = Set(phases.split(separator: ",").map { String($0) })
        // Distinct statements for the fill (a realistic tree); the other phases cycle through fewer.
        let poolSize = selected.contains("fill") ? entries : min(entries, 200_000)
        let t0 = Date()
        let buffer = UnsafeMutableBufferPointer<LedgerEntry>.allocate(capacity: poolSize)
        let base = UInt(bitPattern: buffer.baseAddress)
        DispatchQueue.concurrentPerform(iterations: 64) { chunk in
            let p = UnsafeMutablePointer<LedgerEntry>(bitPattern: base)!
            var i = chunk
            while i < poolSize {
                (p + i).initialize(to: sign(i))
                i += 64
            }
        }
        let pool = Array(buffer)
        buffer.deinitialize()
        buffer.deallocate()
        emit("presign_seconds", Date().timeIntervalSince(t0))

        let ledger = try Ledger(database: cfg.database, settings: cfg.ledger, options: .init(timeout: .seconds(30), batchLimit: max(2000, batch)), logger: logger)
        // The ledger runs (pool, writer) while the append and proof phases do; verification after it reads on its own.
        try await ledger.withRunning {
            try await ledger.acquireLease(holder: "bench", ttl: .seconds(3600))
            var next = Int(try await ledger.size())
            // The pool's statements repeat; the request ids may not (one decision per request id),
            // in this run or an earlier one on the same database.
            let run = UUID().uuidString.prefix(8).lowercased()
            @Sendable func entry(_ i: Int, _ prefix: String = "bench") -> LedgerEntry {
                var e = pool[i % poolSize]
                e.requestID = "\(prefix)-\(run)-\(i)"
                return e
            }
            func take() -> LedgerEntry {
                next += 1
                return entry(next - 1)
            }

            // 1. One writer, unbatched: each append waits for its own commit.
            var n = 0
            var start = Date()
            if selected.contains("unbatched") {
                while Date().timeIntervalSince(start) < seconds {
                    _ = try await ledger.append(take())
                    n += 1
                }
                emit("unbatched_1_per_s", Double(n) / Date().timeIntervalSince(start))
            }

            // 2. One writer, batched: appends of `batch` statements, each batch one commit.
            n = 0
            start = Date()
            while selected.contains("batched") && Date().timeIntervalSince(start) < seconds {
                var b: [LedgerEntry] = []
                b.reserveCapacity(batch)
                for _ in 0..<batch { b.append(take()) }
                _ = try await ledger.append(contentsOf: b)
                n += batch
            }
            if selected.contains("batched") { emit("batched_1_per_s", Double(n) / Date().timeIntervalSince(start)) }

            // 3. Eight writers, each append waiting for its commit (group commit batches them).
            for writers in [8, 64] where selected.contains("concurrent\(writers)") {
                let counter = Counter()
                let deadline = Date().addingTimeInterval(seconds)
                let startIndex = next
                next += 10_000_000
                start = Date()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for w in 0..<writers {
                        group.addTask {
                            var i = startIndex + w
                            while Date() < deadline {
                                _ = try await ledger.append(entry(i))
                                counter.add(1)
                                i += writers
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                emit("concurrent_\(writers)_per_s", Double(counter.value) / Date().timeIntervalSince(start))
            }

            guard selected.contains("fill") || selected.contains("proofs") || selected.contains("verify") else {
                try await ledger.releaseLease()
                return
            }
            // 4. Fill up to `entries` (if needed), then time proofs at that size.
            var size = Int(try await ledger.size())
            start = Date()
            while size < entries {
                let count = min(5000, entries - size)
                var b: [LedgerEntry] = []
                b.reserveCapacity(count)
                for j in 0..<count { b.append(entry(size + j, "fill")) }
                _ = try await ledger.append(contentsOf: b)
                size += count
            }
            emit("fill_seconds", Date().timeIntervalSince(start))
            let treeSize = UInt64(try await ledger.size())
            emit("tree_size", Double(treeSize))
            var inclusion: [Double] = []
            var consistency: [Double] = []
            for _ in 0..<(selected.contains("proofs") ? 2000 : 0) {
                let i = UInt64.random(in: 0..<treeSize)
                var s = Date()
                _ = try await ledger.proveInclusion(index: i, treeSize: treeSize)
                inclusion.append(Date().timeIntervalSince(s) * 1000)
                let f = UInt64.random(in: 1...treeSize)
                s = Date()
                _ = try await ledger.proveConsistency(first: f, second: treeSize)
                consistency.append(Date().timeIntervalSince(s) * 1000)
            }
            inclusion.sort()
            consistency.sort()
            if !inclusion.isEmpty {
            emit("inclusion_ms_p50", inclusion[inclusion.count / 2])
            emit("inclusion_ms_p99", inclusion[inclusion.count * 99 / 100])
            emit("consistency_ms_p50", consistency[consistency.count / 2])
            emit("consistency_ms_p99", consistency[consistency.count * 99 / 100])
            }
            try await ledger.releaseLease()
        }

        // 5. Verify the whole ledger (signatures included) with the reader role.
        guard selected.contains("verify") else { return }
        let start = Date()
        let report = try await LedgerAudit.verifyDatabase(database: cfg.database, trustedKeys: TrustedKeys([vk]), origin: nil, logger: logger)
        let elapsed = Date().timeIntervalSince(start)
        if let p = report.problem { FileHandle.standardError.write(Data("verify problem: \(p)\n".utf8)) }
        emit("verify_entries", Double(report.entries))
        emit("verify_seconds", elapsed)
        emit("verify_per_s", Double(report.entries) / elapsed)
    }

    func emit(_ name: String, _ value: Double) {
        FileHandle.standardOutput.write(Data(String(format: "%@ %.4f\n", name, value).utf8))
    }
}
