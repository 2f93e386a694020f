import CountersignTestSupport
import CountersignVerify
import Testing
@testable import CountersignLedger

/// Pure tests of proof generation from stored complete subtrees, against the RFC definitions.
@Suite struct ProofPlanTests {
    /// An in-memory store of every complete subtree, as the database keeps them.
    struct Store {
        var nodes: [Subtree: [UInt8]] = [:]
        var range = CompactRange()
        mutating func append(_ leaf: [UInt8]) {
            let i = range.size
            nodes[Subtree(level: 0, index: i)] = leaf
            for c in range.append(leafHash: leaf) { nodes[Subtree(level: c.level, index: c.index)] = c.hash }
        }
    }

    @Test func everyProofForEveryTreeSizeUpTo300() throws {
        let leaves = (0..<300).map { Merkle.leafHash(Array("leaf \($0)".utf8)) }
        var store = Store()
        var roots: [[UInt8]] = [Merkle.emptyRoot]
        for l in leaves {
            store.append(l)
            roots.append(store.range.root)
        }
        let ref = ReferenceTree(leaves)
        for n in 1...300 {
            #expect(roots[n] == ref.root(n))
            for m in 0..<n {
                let plan = ProofPlan.inclusion(index: UInt64(m), treeSize: UInt64(n))
                let proof = plan.hashes { store.nodes[$0]! }
                #expect(proof == ref.path(m, n))
                try Merkle.verifyInclusion(leafHash: leaves[m], index: UInt64(m), treeSize: UInt64(n), proof: proof, root: roots[n])
            }
            for m in 1...n {
                let plan = ProofPlan.consistency(first: UInt64(m), second: UInt64(n))
                let proof = plan.hashes { store.nodes[$0]! }
                #expect(proof == ref.consistency(m, n))
                try Merkle.verifyConsistency(firstSize: UInt64(m), secondSize: UInt64(n), firstRoot: roots[m], secondRoot: roots[n], proof: proof)
            }
        }
    }

    @Test func randomLargerTrees() throws {
        let size = 70_001
        var store = Store()
        for i in 0..<size { store.append(Merkle.leafHash(Array("x\(i)".utf8))) }
        var roots: [UInt64: [UInt8]] = [:]
        func root(_ n: UInt64) -> [UInt8] {
            if let r = roots[n] { return r }
            let r = ProofPlan(nodes: [ProofPlan.decompose(0, n)]).hashes { store.nodes[$0]! }[0]
            roots[n] = r
            return r
        }
        #expect(root(UInt64(size)) == store.range.root)
        for _ in 0..<300 {
            let n = UInt64.random(in: 1...UInt64(size))
            let m = UInt64.random(in: 0..<n)
            let proof = ProofPlan.inclusion(index: m, treeSize: n).hashes { store.nodes[$0]! }
            try Merkle.verifyInclusion(leafHash: store.nodes[Subtree(level: 0, index: m)]!, index: m, treeSize: n, proof: proof, root: root(n))
            let f = UInt64.random(in: 1...n)
            let cproof = ProofPlan.consistency(first: f, second: n).hashes { store.nodes[$0]! }
            try Merkle.verifyConsistency(firstSize: f, secondSize: n, firstRoot: root(f), secondRoot: root(n), proof: cproof)
        }
    }

    @Test func migrationSplitsIntoStatements() {
        let statements = Schema.statements(Schema.migrations(writer: "w", reader: "r")[0].sql)
        #expect(statements.count > 20)
        #expect(statements.contains { $0.hasPrefix("CREATE FUNCTION ledger_check_epoch()") && $0.hasSuffix("END $$;") })
        #expect(statements.allSatisfy { !$0.hasPrefix("--") })
    }
}
