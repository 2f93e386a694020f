import CountersignVerify

/// A reference RFC 6962 implementation straight from the recursive definitions (RFC 9162 §2.1),
/// memoised per subtree, used to check generated proofs.
public final class ReferenceTree: @unchecked Sendable {
    public let leaves: [[UInt8]]
    private var cache: [Int: [UInt8]] = [:]
    public init(_ leaves: [[UInt8]]) { self.leaves = leaves }

    public static func k(_ n: Int) -> Int {
        var k = 1
        while k * 2 < n { k *= 2 }
        return k
    }
    public func mth(_ lo: Int, _ hi: Int) -> [UInt8] {
        if hi == lo { return Merkle.emptyRoot }
        if hi - lo == 1 { return leaves[lo] }
        let key = lo &* 1_000_003 &+ hi
        if let h = cache[key] { return h }
        let s = Self.k(hi - lo)
        let h = Merkle.nodeHash(mth(lo, lo + s), mth(lo + s, hi))
        cache[key] = h
        return h
    }
    public func root(_ n: Int) -> [UInt8] { mth(0, n) }
    public func path(_ m: Int, _ n: Int) -> [[UInt8]] { path(m, 0, n) }
    private func path(_ m: Int, _ lo: Int, _ hi: Int) -> [[UInt8]] {
        if hi - lo <= 1 { return [] }
        let s = Self.k(hi - lo)
        if m < s { return path(m, lo, lo + s) + [mth(lo + s, hi)] }
        return path(m - s, lo + s, hi) + [mth(lo, lo + s)]
    }
    public func consistency(_ m: Int, _ n: Int) -> [[UInt8]] { subproof(m, 0, n, true) }
    private func subproof(_ m: Int, _ lo: Int, _ hi: Int, _ b: Bool) -> [[UInt8]] {
        if m == hi - lo { return b ? [] : [mth(lo, hi)] }
        let s = Self.k(hi - lo)
        if m <= s { return subproof(m, lo, lo + s, b) + [mth(lo + s, hi)] }
        return subproof(m - s, lo + s, hi, false) + [mth(lo, lo + s)]
    }
}
