import CountersignTestSupport
import Crypto
import Testing
@testable import CountersignVerify

func hex(_ s: String) -> [UInt8] { Hex.decode(s)! }

@Suite struct MerkleTests {
    /// The leaves of the certificate-transparency test tree (RFC 6962 test data).
    static let leaves: [[UInt8]] = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                    "606162636465666768696a6b6c6d6e6f"].map(hex)
    static let roots: [String] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
    static var leafHashes: [[UInt8]] { leaves.map { Merkle.leafHash($0) } }

    @Test func emptyTreeRoot() {
        #expect(Hex.encode(Merkle.emptyRoot) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(CompactRange().root == Merkle.emptyRoot)
    }

    @Test(arguments: 1...8) func rootsMatchTheTestVectors(size: Int) {
        let hashes = Array(Self.leafHashes.prefix(size))
        #expect(Hex.encode(Merkle.root(leafHashes: hashes)) == Self.roots[size - 1])
    }

    struct InclusionVector: Sendable, CustomTestStringConvertible {
        var index: UInt64, size: UInt64, proof: [String]
        var testDescription: String { "leaf \(index) of \(size)" }
    }
    static let inclusionVectors: [InclusionVector] = [
        .init(index: 0, size: 1, proof: []),
        .init(index: 0, size: 8, proof: ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                                         "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                                         "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
        .init(index: 5, size: 8, proof: ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                                         "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                                         "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
        .init(index: 2, size: 3, proof: ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
        .init(index: 1, size: 5, proof: ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                                         "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                                         "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    ]

    @Test(arguments: inclusionVectors) func inclusionVectorsVerify(v: InclusionVector) throws {
        let root = hex(Self.roots[Int(v.size) - 1])
        try Merkle.verifyInclusion(leafHash: Self.leafHashes[Int(v.index)], index: v.index, treeSize: v.size, proof: v.proof.map(hex), root: root)
        #expect(ReferenceTree(Self.leafHashes).path(Int(v.index), Int(v.size)).map { Hex.encode($0) } == v.proof)
    }

    struct ConsistencyVector: Sendable, CustomTestStringConvertible {
        var first: UInt64, second: UInt64, proof: [String]
        var testDescription: String { "\(first) → \(second)" }
    }
    static let consistencyVectors: [ConsistencyVector] = [
        .init(first: 1, second: 1, proof: []),
        .init(first: 1, second: 8, proof: ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                                           "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                                           "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
        .init(first: 6, second: 8, proof: ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                                           "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                                           "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
        .init(first: 2, second: 5, proof: ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                                           "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    ]

    @Test(arguments: consistencyVectors) func consistencyVectorsVerify(v: ConsistencyVector) throws {
        try Merkle.verifyConsistency(firstSize: v.first, secondSize: v.second, firstRoot: hex(Self.roots[Int(v.first) - 1]),
                                     secondRoot: hex(Self.roots[Int(v.second) - 1]), proof: v.proof.map(hex))
    }

    static func randomLeaves(_ n: Int) -> [[UInt8]] {
        var g = SystemRandomNumberGenerator()
        return (0..<n).map { i in Merkle.leafHash(Array("leaf \(i) \(g.next() as UInt64)".utf8)) }
    }

    /// Every tree size 1...300: the compact range's root equals the reference, every inclusion proof
    /// of the reference verifies, every consistency proof verifies, and a flipped bit fails.
    @Test func allProofsUpTo300() throws {
        let hashes = Self.randomLeaves(300)
        let ref = ReferenceTree(hashes)
        var roots: [[UInt8]] = [Merkle.emptyRoot]
        var range = CompactRange()
        for n in 1...300 {
            range.append(leafHash: hashes[n - 1])
            let root = ref.root(n)
            #expect(range.root == root)
            roots.append(root)
        }
        for n in 1...300 {
            for m in 0..<n {
                try Merkle.verifyInclusion(leafHash: hashes[m], index: UInt64(m), treeSize: UInt64(n), proof: ref.path(m, n), root: roots[n])
            }
            for m in 1...n {
                try Merkle.verifyConsistency(firstSize: UInt64(m), secondSize: UInt64(n), firstRoot: roots[m], secondRoot: roots[n], proof: ref.consistency(m, n))
            }
        }
    }

    @Test func tamperedProofsFail() throws {
        let hashes = Self.randomLeaves(37)
        let ref = ReferenceTree(hashes)
        let root = ref.root(37)
        for m in [0, 5, 31, 36] {
            var proof = ref.path(m, 37)
            #expect(throws: VerificationError.self) {
                try Merkle.verifyInclusion(leafHash: hashes[m], index: UInt64(m) + 1, treeSize: 37, proof: proof, root: root)
            }
            #expect(throws: VerificationError.self) {
                try Merkle.verifyInclusion(leafHash: hashes[m], index: UInt64(m), treeSize: 37, proof: proof.dropLast(), root: root)
            }
            proof[0][0] ^= 1
            #expect(throws: VerificationError.self) {
                try Merkle.verifyInclusion(leafHash: hashes[m], index: UInt64(m), treeSize: 37, proof: proof, root: root)
            }
        }
        let r20 = ref.root(20)
        var cproof = ref.consistency(20, 37)
        try Merkle.verifyConsistency(firstSize: 20, secondSize: 37, firstRoot: r20, secondRoot: root, proof: cproof)
        cproof[1][3] ^= 0x80
        #expect(throws: VerificationError.self) {
            try Merkle.verifyConsistency(firstSize: 20, secondSize: 37, firstRoot: r20, secondRoot: root, proof: cproof)
        }
        #expect(throws: VerificationError.self) {
            try Merkle.verifyInclusion(leafHash: hashes[0], index: 37, treeSize: 37, proof: [], root: root)
        }
    }

    @Test(arguments: [1000, 4097, 12345]) func randomLargerTrees(size: Int) throws {
        let hashes = Self.randomLeaves(size)
        let ref = ReferenceTree(hashes)
        var range = CompactRange()
        for h in hashes { range.append(leafHash: h) }
        let root = range.root
        #expect(root == ref.root(size))
        for _ in 0..<40 {
            let m = Int.random(in: 0..<size)
            try Merkle.verifyInclusion(leafHash: hashes[m], index: UInt64(m), treeSize: UInt64(size), proof: ref.path(m, size), root: root)
            let f = Int.random(in: 1...size)
            try Merkle.verifyConsistency(firstSize: UInt64(f), secondSize: UInt64(size), firstRoot: ref.root(f),
                                         secondRoot: root, proof: ref.consistency(f, size))
        }
    }

    @Test func compactRangeReportsCompletedSubtrees() throws {
        var range = CompactRange()
        let h = Self.randomLeaves(8)
        #expect(range.append(leafHash: h[0]).isEmpty)
        let c1 = range.append(leafHash: h[1])
        #expect(c1.map(\.level) == [1] && c1[0].index == 0)
        range.append(leafHash: h[2])
        let c3 = range.append(leafHash: h[3])
        #expect(c3.map(\.level) == [1, 2] && c3.map(\.index) == [1, 0])
        #expect(c3[1].hash == ReferenceTree(h).root(4))
        let rebuilt = try CompactRange(size: 4, subtreeHashes: [c3[1].hash])
        #expect(rebuilt.root == range.root)
        #expect(CompactRange.subtrees(ofSize: 13).map(\.level) == [3, 2, 0])
        #expect(CompactRange.subtrees(ofSize: 13).map(\.index) == [0, 2, 12])
    }
}
