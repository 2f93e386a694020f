import Crypto

/// RFC 6962 / RFC 9162 Merkle tree hashing and proof verification. Pure: no I/O, no generation
/// (the ledger generates proofs; anyone verifies them with these functions, offline).
///
/// - Leaf hash: `SHA-256(0x00 ‖ leaf)`, where the leaf is a statement's bytes exactly as signed.
/// - Interior node: `SHA-256(0x01 ‖ left ‖ right)`.
/// - The root of the empty tree is `SHA-256()` (the hash of nothing).
public enum Merkle {
    /// Length of every hash in the tree.
    public static let hashSize = 32
    private static let leafPrefix: [UInt8] = [0x00]
    private static let nodePrefix: [UInt8] = [0x01]

    /// `SHA-256(0x00 ‖ leaf)`.
    public static func leafHash(_ leaf: some Sequence<UInt8>) -> [UInt8] {
        var h = SHA256()
        h.update(data: [0x00])
        h.update(data: Array(leaf))
        return Array(h.finalize())
    }

    /// `SHA-256(0x00 ‖ leaf)` without copying a contiguous leaf.
    public static func leafHash(bytes leaf: [UInt8]) -> [UInt8] {
        var h = SHA256()
        h.update(data: leafPrefix)
        h.update(data: leaf)
        return Array(h.finalize())
    }

    /// `SHA-256(0x01 ‖ left ‖ right)`.
    public static func nodeHash(_ left: [UInt8], _ right: [UInt8]) -> [UInt8] {
        var h = SHA256()
        h.update(data: nodePrefix)
        h.update(data: left)
        h.update(data: right)
        return Array(h.finalize())
    }

    /// The root of the empty tree: `SHA-256()` of no bytes.
    public static var emptyRoot: [UInt8] { Array(SHA256.hash(data: [UInt8]())) }

    /// The root of a tree over the given leaf hashes (RFC 9162 §2.1.1), in O(n) time, O(log n) space.
    public static func root(leafHashes: [[UInt8]]) -> [UInt8] {
        var range = CompactRange()
        for h in leafHashes { range.append(leafHash: h) }
        return range.root
    }

    /// Checks an inclusion proof (RFC 9162 §2.1.3.2).
    /// - Parameters:
    ///   - leafHash: the leaf hash of the entry (``leafHash(_:)`` of the statement bytes).
    ///   - index: the 0-based leaf index.
    ///   - treeSize: the size of the tree the proof is for.
    ///   - proof: the proof's hashes, in RFC 9162 order.
    ///   - root: the root hash of the tree of `treeSize` (from a verified checkpoint).
    /// - Throws: ``VerificationError`` with code `badProof` when the proof does not lead to `root`.
    public static func verifyInclusion(leafHash: [UInt8], index: UInt64, treeSize: UInt64, proof: [[UInt8]], root: [UInt8]) throws {
        let computed = try rootFromInclusionProof(leafHash: leafHash, index: index, treeSize: treeSize, proof: proof)
        guard computed == root else {
            throw VerificationError(.badProof, "inclusion proof of index \(index) in tree of size \(treeSize) leads to another root")
        }
    }

    /// The root an inclusion proof leads to (RFC 9162 §2.1.3.2), or an error when the proof has
    /// the wrong length for `index` and `treeSize`.
    public static func rootFromInclusionProof(leafHash: [UInt8], index: UInt64, treeSize: UInt64, proof: [[UInt8]]) throws -> [UInt8] {
        guard index < treeSize else {
            throw VerificationError(.badProof, "index \(index) is not below tree size \(treeSize)")
        }
        guard leafHash.count == hashSize, proof.allSatisfy({ $0.count == hashSize }) else {
            throw VerificationError(.badProof, "hashes must be \(hashSize) bytes")
        }
        var fn = index
        var sn = treeSize - 1
        var r = leafHash
        for p in proof {
            guard sn != 0 else { throw VerificationError(.badProof, "inclusion proof is too long") }
            if fn & 1 == 1 || fn == sn {
                r = nodeHash(p, r)
                if fn & 1 == 0 {
                    while fn & 1 == 0 && fn != 0 {
                        fn >>= 1
                        sn >>= 1
                    }
                }
            } else {
                r = nodeHash(r, p)
            }
            fn >>= 1
            sn >>= 1
        }
        guard sn == 0 else { throw VerificationError(.badProof, "inclusion proof is too short") }
        return r
    }

    /// Checks a consistency proof between two tree sizes (RFC 9162 §2.1.4.2).
    ///
    /// `firstSize == secondSize` needs an empty proof and equal roots; `firstSize == 0` is
    /// consistent with anything (with an empty proof).
    /// - Throws: ``VerificationError`` with code `badProof`.
    public static func verifyConsistency(firstSize: UInt64, secondSize: UInt64, firstRoot: [UInt8], secondRoot: [UInt8], proof: [[UInt8]]) throws {
        guard firstSize <= secondSize else {
            throw VerificationError(.badProof, "first size \(firstSize) is above second size \(secondSize)")
        }
        guard proof.allSatisfy({ $0.count == hashSize }) else {
            throw VerificationError(.badProof, "hashes must be \(hashSize) bytes")
        }
        if firstSize == secondSize {
            guard proof.isEmpty, firstRoot == secondRoot else {
                throw VerificationError(.badProof, "equal sizes need an empty proof and equal roots")
            }
            return
        }
        if firstSize == 0 {
            guard proof.isEmpty else { throw VerificationError(.badProof, "a proof from the empty tree must be empty") }
            return
        }
        guard !proof.isEmpty else { throw VerificationError(.badProof, "consistency proof is empty") }
        var path = proof
        if firstSize & (firstSize - 1) == 0 { path.insert(firstRoot, at: 0) }
        var fn = firstSize - 1
        var sn = secondSize - 1
        while fn & 1 == 1 {
            fn >>= 1
            sn >>= 1
        }
        var fr = path[0]
        var sr = path[0]
        for c in path.dropFirst() {
            guard sn != 0 else { throw VerificationError(.badProof, "consistency proof is too long") }
            if fn & 1 == 1 || fn == sn {
                fr = nodeHash(c, fr)
                sr = nodeHash(c, sr)
                if fn & 1 == 0 {
                    while fn & 1 == 0 && fn != 0 {
                        fn >>= 1
                        sn >>= 1
                    }
                }
            } else {
                sr = nodeHash(sr, c)
            }
            fn >>= 1
            sn >>= 1
        }
        guard sn == 0 else { throw VerificationError(.badProof, "consistency proof is too short") }
        guard fr == firstRoot else { throw VerificationError(.badProof, "consistency proof does not lead to the first root") }
        guard sr == secondRoot else { throw VerificationError(.badProof, "consistency proof does not lead to the second root") }
    }
}

/// The right edge of a Merkle tree being built leaf by leaf: one complete-subtree hash per set bit
/// of the size (a "compact range" from 0). Appending costs amortised O(1) hashes; the root costs
/// O(log n). What a verifier keeps while it streams a ledger.
public struct CompactRange: Sendable, Hashable {
    /// Number of leaves appended.
    public private(set) var size: UInt64
    /// Complete subtrees, left to right: `(level, hash)`, levels strictly decreasing.
    public private(set) var nodes: [(level: Int, hash: [UInt8])]

    public static func == (a: CompactRange, b: CompactRange) -> Bool {
        a.size == b.size && a.nodes.map(\.hash) == b.nodes.map(\.hash)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(size)
        for n in nodes { hasher.combine(n.hash) }
    }

    /// An empty tree.
    public init() {
        size = 0
        nodes = []
    }

    /// A tree of `size` leaves whose complete subtrees (one per set bit of `size`, largest first)
    /// have the given hashes.
    /// - Throws: ``VerificationError`` (`malformed`) when the count does not match `size`.
    public init(size: UInt64, subtreeHashes: [[UInt8]]) throws {
        guard subtreeHashes.count == size.nonzeroBitCount else {
            throw VerificationError(.malformed, "a tree of size \(size) has \(size.nonzeroBitCount) complete subtrees, not \(subtreeHashes.count)")
        }
        self.size = size
        var levels: [Int] = []
        for bit in stride(from: 63, through: 0, by: -1) where size & (UInt64(1) << UInt64(bit)) != 0 { levels.append(bit) }
        nodes = zip(levels, subtreeHashes).map { (level: $0, hash: $1) }
    }

    /// The complete subtrees of a tree of `size` leaves, largest first, as `(level, index)` where
    /// the subtree covers leaves `index << level ..< (index + 1) << level`.
    public static func subtrees(ofSize size: UInt64) -> [(level: Int, index: UInt64)] {
        var out: [(level: Int, index: UInt64)] = []
        var start: UInt64 = 0
        for bit in stride(from: 63, through: 0, by: -1) where size & (UInt64(1) << UInt64(bit)) != 0 {
            out.append((level: bit, index: start >> UInt64(bit)))
            start += UInt64(1) << UInt64(bit)
        }
        return out
    }

    /// Appends a leaf hash; returns the complete subtrees of level ≥ 1 that this leaf completed,
    /// as `(level, index, hash)`, lowest level first.
    @discardableResult
    public mutating func append(leafHash: [UInt8]) -> [(level: Int, index: UInt64, hash: [UInt8])] {
        var completed: [(level: Int, index: UInt64, hash: [UInt8])] = []
        var level = 0
        var hash = leafHash
        size += 1
        while let last = nodes.last, last.level == level {
            nodes.removeLast()
            hash = Merkle.nodeHash(last.hash, hash)
            level += 1
            completed.append((level: level, index: (size >> UInt64(level)) - 1, hash: hash))
        }
        nodes.append((level: level, hash: hash))
        return completed
    }

    /// The root hash of the tree so far (``Merkle/emptyRoot`` when empty).
    public var root: [UInt8] {
        guard var acc = nodes.last?.hash else { return Merkle.emptyRoot }
        for node in nodes.dropLast().reversed() { acc = Merkle.nodeHash(node.hash, acc) }
        return acc
    }
}
