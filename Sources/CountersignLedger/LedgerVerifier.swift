public import CountersignVerify
import Foundation

/// What `ledger verify` found wrong first.
public struct LedgerProblem: Error, Sendable, Hashable, CustomStringConvertible {
    /// The first index where the ledger is wrong (for a checkpoint whose root differs: the first
    /// index after the last checkpoint that matched, since the change lies in between).
    public var index: UInt64
    /// What is wrong, in words.
    public var message: String

    public init(index: UInt64, message: String) {
        self.index = index
        self.message = message
    }

    public var description: String { "index \(index): \(message)" }
}

/// A stored complete-subtree hash (`merkle_nodes`), for checking the stored tree as well.
public struct StoredNode: Sendable, Hashable {
    public var lastLeaf: UInt64
    public var level: Int
    public var hash: [UInt8]

    public init(lastLeaf: UInt64, level: Int, hash: [UInt8]) {
        self.lastLeaf = lastLeaf
        self.level = level
        self.hash = hash
    }
}

/// Streams a whole ledger and checks it: gapless indices from 0, every leaf hash, every signature
/// by a trusted key (following key events), epochs never going back, every checkpoint's signature
/// and root against the recomputed tree, and (from the database) every stored subtree hash.
///
/// Feed it entries in index order with ``add(entries:nodes:)`` and checkpoints with
/// ``add(checkpoint:)`` before the entries pass their size; call ``finish()`` at the end. The
/// first problem stops it (later calls return the same problem).
///
/// Key following: a key becomes trusted from the index after a `key-event` entry that a trusted
/// key signed and that names the key (``KeyEvents/introducedKeys(in:)``).
public struct LedgerVerifier: Sendable {
    public private(set) var trusted: TrustedKeys
    /// Index from which each key is trusted (0 for the keys given at the start).
    public private(set) var trustedFrom: [String: UInt64] = [:]
    public let origin: String?
    public let followKeyEvents: Bool
    /// How many threads check signatures in parallel. Default: the active processor count.
    public var parallelism: Int

    /// Entries checked so far (the recomputed tree's size).
    public var size: UInt64 { tree.size }
    public private(set) var checkpointsVerified = 0
    public private(set) var nodesVerified = 0
    public private(set) var problem: LedgerProblem?
    /// The recomputed root so far.
    public var root: [UInt8] { tree.root }

    private var tree = CompactRange()
    private var lastEpoch: UInt64 = 0
    private var pendingCheckpoints: [StoredCheckpoint] = []
    private var lastMatchedCheckpoint: UInt64 = 0

    /// - Parameters:
    ///   - trustedKeys: the keys trusted from index 0 (e.g. `--trusted-key` files).
    ///   - origin: when given, every checkpoint's origin line must equal it.
    ///   - followKeyEvents: trust keys introduced by key-event entries signed by trusted keys.
    public init(trustedKeys: TrustedKeys, origin: String? = nil, followKeyEvents: Bool = true) {
        self.trusted = trustedKeys
        self.origin = origin
        self.followKeyEvents = followKeyEvents
        self.parallelism = max(1, ProcessInfo.processInfo.activeProcessorCount)
        for id in trustedKeys.keys.keys { trustedFrom[id] = 0 }
    }

    /// Queues a checkpoint; checked when the entries reach its size (now, if they have).
    @discardableResult
    public mutating func add(checkpoint: StoredCheckpoint) -> LedgerProblem? {
        guard problem == nil else { return problem }
        if checkpoint.treeSize < tree.size {
            return fail(checkpoint.treeSize == 0 ? 0 : checkpoint.treeSize - 1, "checkpoint of size \(checkpoint.treeSize) arrived after its entries")
        }
        let at = pendingCheckpoints.firstIndex { $0.treeSize > checkpoint.treeSize } ?? pendingCheckpoints.endIndex
        pendingCheckpoints.insert(checkpoint, at: at)
        checkReachedCheckpoints()
        return problem
    }

    /// Checks the next entries (in index order) and, optionally, the stored subtree hashes whose
    /// last leaf is among them. Returns the first problem, if any.
    @discardableResult
    public mutating func add(entries: [StoredEntry], nodes: [StoredNode]? = nil) -> LedgerProblem? {
        guard problem == nil, !entries.isEmpty else { return problem }
        // Sequential checks: index, leaf hash, epoch, key events, tree, stored nodes, checkpoints.
        var nodeIterator = (nodes ?? []).makeIterator()
        var nextNode = nodeIterator.next()
        var firstProblem: LedgerProblem?
        var pendingSignatures: [Int] = []
        for (position, e) in entries.enumerated() {
            let expected = tree.size
            if e.index != expected {
                firstProblem = LedgerProblem(index: expected, message: e.index > expected
                    ? "entry \(expected) is missing (the next stored index is \(e.index))"
                    : "index \(e.index) appears again or out of order (expected \(expected))")
                break
            }
            let leaf = Merkle.leafHash(bytes: e.statement.payload)
            if leaf != e.leafHash {
                firstProblem = LedgerProblem(index: e.index, message: "stored leaf hash does not match the statement bytes")
                break
            }
            if e.epoch < lastEpoch {
                firstProblem = LedgerProblem(index: e.index, message: "epoch went back from \(lastEpoch) to \(e.epoch)")
                break
            }
            lastEpoch = e.epoch
            if e.kind == .keyEvent && followKeyEvents {
                // Checked now, in order, because it may extend the trusted keys.
                if let p = checkSignature(e) {
                    firstProblem = p
                    break
                }
                for key in KeyEvents.introducedKeys(in: e.statement.payload) where !trusted.contains(key.keyID) {
                    trusted.insert(key)
                    trustedFrom[key.keyID] = e.index + 1
                }
            } else {
                pendingSignatures.append(position)
            }
            let completed = tree.append(leafHash: leaf)
            if nodes != nil {
                for c in completed {
                    guard let stored = nextNode, stored.lastLeaf == e.index, stored.level == c.level else {
                        let first = c.index << UInt64(c.level)
                        firstProblem = LedgerProblem(index: first, message: "the stored subtree of level \(c.level) over entries \(first)...\(e.index) is missing")
                        break
                    }
                    if stored.hash != c.hash {
                        let first = c.index << UInt64(c.level)
                        firstProblem = LedgerProblem(index: first, message: "the stored subtree hash over entries \(first)...\(e.index) differs from the entries (an entry or a stored hash was changed or moved)")
                        break
                    }
                    nodesVerified += 1
                    nextNode = nodeIterator.next()
                }
                if firstProblem != nil { break }
                if let extra = nextNode, extra.lastLeaf <= e.index {
                    firstProblem = LedgerProblem(index: extra.lastLeaf, message: "a stored subtree hash (level \(extra.level)) ends at entry \(extra.lastLeaf) where none belongs")
                    break
                }
            }
            checkReachedCheckpoints()
            if let p = problem {
                firstProblem = p
                problem = nil
                break
            }
        }
        // Parallel signature checks of the entries before the first sequential problem.
        let limit = firstProblem?.index ?? UInt64.max
        let toCheck = pendingSignatures.filter { entries[$0].index < limit }
        if let p = checkSignaturesInParallel(entries, toCheck), p.index < limit {
            firstProblem = p
        }
        if let firstProblem { problem = firstProblem }
        return problem
    }

    /// Finishes: every queued checkpoint must have been reached.
    @discardableResult
    public mutating func finish() -> LedgerProblem? {
        guard problem == nil else { return problem }
        if let cp = pendingCheckpoints.first {
            return fail(tree.size, "a signed checkpoint says the ledger had \(cp.treeSize) entries; only \(tree.size) are there (the tail was removed)")
        }
        return nil
    }

    private mutating func fail(_ index: UInt64, _ message: String) -> LedgerProblem {
        let p = LedgerProblem(index: index, message: message)
        problem = p
        return p
    }

    private func checkSignature(_ e: StoredEntry) -> LedgerProblem? {
        guard let from = trustedFrom[e.statement.keyID], from <= e.index else {
            return LedgerProblem(index: e.index, message: "signed by key \(e.statement.keyID), which is not trusted at this index")
        }
        do {
            try trusted.verify(e.statement)
            return nil
        } catch {
            return LedgerProblem(index: e.index, message: "the signature does not verify with key \(e.statement.keyID)")
        }
    }

    private func checkSignaturesInParallel(_ entries: [StoredEntry], _ positions: [Int]) -> LedgerProblem? {
        guard !positions.isEmpty else { return nil }
        let workers = min(parallelism, max(1, positions.count / 256))
        if workers <= 1 {
            for p in positions { if let problem = checkSignature(entries[p]) { return problem } }
            return nil
        }
        let results = ProblemSlots(count: workers)
        let me = self
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            var i = w
            while i < positions.count {
                if let problem = me.checkSignature(entries[positions[i]]) {
                    results.set(w, problem)
                    return
                }
                i += workers
            }
        }
        return results.all.compactMap { $0 }.min { $0.index < $1.index }
    }

    private mutating func checkReachedCheckpoints() {
        while problem == nil, let cp = pendingCheckpoints.first, cp.treeSize == tree.size {
            pendingCheckpoints.removeFirst()
            checkCheckpoint(cp)
        }
    }

    private mutating func checkCheckpoint(_ cp: StoredCheckpoint) {
        let at = cp.treeSize == 0 ? 0 : cp.treeSize - 1
        guard cp.payloadType == PayloadType.checkpoint else {
            _ = fail(at, "checkpoint of size \(cp.treeSize) has payload type \(cp.payloadType)")
            return
        }
        guard let from = trustedFrom[cp.keyID], from <= cp.treeSize else {
            _ = fail(at, "checkpoint of size \(cp.treeSize) is signed by key \(cp.keyID), which is not trusted")
            return
        }
        do {
            try trusted.verify(cp.statement)
        } catch {
            _ = fail(at, "the signature of the checkpoint of size \(cp.treeSize) does not verify (the checkpoint was replaced)")
            return
        }
        let parsed: Checkpoint
        do {
            parsed = try Checkpoint(parsing: cp.body)
        } catch {
            _ = fail(at, "checkpoint of size \(cp.treeSize) is malformed: \(error)")
            return
        }
        if let origin, parsed.origin != origin {
            _ = fail(at, "checkpoint of size \(cp.treeSize) has origin \(parsed.origin), expected \(origin)")
            return
        }
        guard parsed.treeSize == cp.treeSize, parsed.rootHash == cp.rootHash else {
            _ = fail(at, "checkpoint row of size \(cp.treeSize) does not match its signed text")
            return
        }
        guard parsed.rootHash == tree.root else {
            _ = fail(lastMatchedCheckpoint, "the entries \(lastMatchedCheckpoint)..<\(cp.treeSize) do not match the signed checkpoint of size \(cp.treeSize) (root differs: entries were changed, removed or replaced)")
            return
        }
        lastMatchedCheckpoint = cp.treeSize
        checkpointsVerified += 1
    }
}

/// One slot per worker for ``LedgerVerifier``'s parallel signature checks.
private final class ProblemSlots: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [LedgerProblem?]
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ p: LedgerProblem) {
        lock.lock()
        slots[i] = p
        lock.unlock()
    }
    var all: [LedgerProblem?] {
        lock.lock()
        defer { lock.unlock() }
        return slots
    }
}
