import CountersignVerify

/// A complete subtree of the RFC 6962 tree: leaves `index << level ..< (index + 1) << level`.
/// Level 0 is a leaf. The ledger stores every complete subtree (level 0 in `entries`, the rest in
/// `merkle_nodes` keyed by ``lastLeaf``), so any proof is a few primary-key reads.
struct Subtree: Hashable, Sendable {
    var level: Int
    var index: UInt64

    /// Index of the subtree's last leaf.
    var lastLeaf: UInt64 { ((index + 1) << UInt64(level)) - 1 }
}

/// Which stored subtrees an inclusion or consistency proof needs, and how to fold them into the
/// proof's hashes (RFC 9162 §2.1.3.1 and §2.1.4.1, with every node of the proof expressed as
/// complete subtrees: a node on the right edge of the tree is a fold of complete subtrees).
struct ProofPlan: Sendable {
    /// One entry per proof hash: the complete subtrees, left to right, whose fold is the hash.
    var nodes: [[Subtree]]

    /// Every subtree to read, without duplicates.
    var subtrees: [Subtree] {
        var seen = Set<Subtree>()
        var out: [Subtree] = []
        for node in nodes { for s in node where seen.insert(s).inserted { out.append(s) } }
        return out
    }

    /// Folds the subtree hashes into the proof: `SHA-256(0x01 ‖ a ‖ fold(rest))`, right to left.
    func hashes(_ hashOf: (Subtree) throws -> [UInt8]) rethrows -> [[UInt8]] {
        try nodes.map { parts in
            var acc = try hashOf(parts[parts.count - 1])
            for s in parts.dropLast().reversed() { acc = Merkle.nodeHash(try hashOf(s), acc) }
            return acc
        }
    }

    /// The complete subtrees whose fold is the root of leaves `lo ..< hi`, a node of the RFC 6962
    /// tree (so `lo` is aligned to the largest power of two not above `hi - lo`).
    static func decompose(_ lo: UInt64, _ hi: UInt64) -> [Subtree] {
        var out: [Subtree] = []
        var start = lo
        while start < hi {
            let remaining = hi - start
            let level = 63 - remaining.leadingZeroBitCount
            out.append(Subtree(level: level, index: start >> UInt64(level)))
            start += UInt64(1) << UInt64(level)
        }
        return out
    }

    /// Largest power of two strictly below `n` (n ≥ 2).
    static func split(_ n: UInt64) -> UInt64 {
        UInt64(1) << UInt64(63 - (n - 1).leadingZeroBitCount)
    }

    /// The plan of the inclusion proof of leaf `index` in the tree of `treeSize` leaves.
    /// Precondition: `index < treeSize`.
    static func inclusion(index: UInt64, treeSize: UInt64) -> ProofPlan {
        var ranges: [(UInt64, UInt64)] = []
        // PATH(m, D[lo:hi]), iteratively; nodes are collected leaf-side first.
        var lo: UInt64 = 0
        var hi = treeSize
        var m = index
        var stack: [(UInt64, UInt64)] = []
        while hi - lo > 1 {
            let k = split(hi - lo)
            if m < k {
                stack.append((lo + k, hi))
                hi = lo + k
            } else {
                stack.append((lo, lo + k))
                lo += k
                m -= k
            }
        }
        ranges = stack.reversed()
        return ProofPlan(nodes: ranges.map { decompose($0.0, $0.1) })
    }

    /// The plan of the consistency proof between tree sizes `first` and `second`.
    /// Precondition: `0 < first ≤ second`. Empty when `first == second`.
    static func consistency(first: UInt64, second: UInt64) -> ProofPlan {
        guard first < second else { return ProofPlan(nodes: []) }
        // SUBPROOF(m, D[lo:hi], b), iteratively.
        var lo: UInt64 = 0
        var hi = second
        var m = first
        var b = true
        var stack: [(UInt64, UInt64)] = []
        while true {
            let n = hi - lo
            if m == n {
                if !b { stack.append((lo, hi)) }
                break
            }
            let k = split(n)
            if m <= k {
                stack.append((lo + k, hi))
                hi = lo + k
            } else {
                stack.append((lo, lo + k))
                lo += k
                m -= k
                b = false
            }
        }
        return ProofPlan(nodes: stack.reversed().map { decompose($0.0, $0.1) })
    }
}
