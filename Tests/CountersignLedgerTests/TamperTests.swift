import CountersignTestSupport
import CountersignConfig
import CountersignVerify
import Foundation
import Testing
@testable import CountersignLedger

/// The tamper matrix: a superuser with triggers disabled changes the ledger; `ledger verify` must
/// name the right index. Each case gets its own database of 64 entries with a signed checkpoint
/// every 8 entries.
@Suite(.serialized) struct TamperTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var sql: String
        /// Entries appended through the ledger after the tampering (re-append after truncation).
        var reappend: Int = 0
        var expectedIndex: UInt64
        /// Whether its export shows the change too (a stored subtree hash is not exported).
        var inExport = true
        /// Where the export shows it, when not at `expectedIndex`: without the stored subtree hashes,
        /// a change that keeps every leaf hash right is found by the first signed checkpoint that
        /// no longer matches, which names the entries after the last one that did.
        var exportIndex: UInt64?
        /// Found only against the newest checkpoint kept outside the ledger (`--checkpoint`): the
        /// ledger without it verifies.
        var onlyAgainstAKeptCheckpoint = false
        var testDescription: String { name }
    }

    /// The attacker's key: a software key on purpose, since what it forges must come from outside
    /// the token (the ledger's own statements and checkpoints are signed in the SoftHSM test token).
    static let forgedKey = OutsideKey()

    static var cases: [Case] {
        let forged = forgedKey.sign(payloadType: PayloadType.decision, payload: Array("forged approval".utf8))
        let forgedLeaf = Hex.encode(Merkle.leafHash(forged.payload))
        let fakeRoot = Array(repeating: UInt8(0xAB), count: 32)
        let fakeBody = Checkpoint(origin: "test.local/ledger", treeSize: 32, rootHash: fakeRoot).bytes
        let fakeSig = forgedKey.sign(payloadType: PayloadType.checkpoint, payload: fakeBody)
        return [
            Case(name: "change a statement byte (leaf hash recomputed)",
                 sql: """
                    UPDATE entries SET statement = overlay(statement placing '\\xff'::bytea from 3 for 1),
                                       leaf_hash = sha256('\\x00'::bytea || overlay(statement placing '\\xff'::bytea from 3 for 1)) WHERE idx = 20
                    """,
                 expectedIndex: 20),
            Case(name: "change a statement byte (check constraint dropped)",
                 sql: """
                    ALTER TABLE entries DROP CONSTRAINT entries_leaf_hash_matches;
                    UPDATE entries SET statement = overlay(statement placing '\\xff'::bytea from 3 for 1) WHERE idx = 20
                    """,
                 expectedIndex: 20),
            Case(name: "change a stored leaf hash",
                 sql: """
                    ALTER TABLE entries DROP CONSTRAINT entries_leaf_hash_matches;
                    UPDATE entries SET leaf_hash = sha256('\\x00'::bytea || 'x'::bytea) WHERE idx = 33
                    """,
                 expectedIndex: 33),
            Case(name: "change a stored subtree hash",
                 sql: "UPDATE merkle_nodes SET hash = sha256(hash) WHERE last_leaf = 27 AND level = 2",
                 expectedIndex: 24, inExport: false),
            Case(name: "delete a row",
                 sql: "DELETE FROM entries WHERE idx = 30",
                 expectedIndex: 30),
            // The statements trade places (their request ids stay: one decision per request id).
            Case(name: "swap two rows",
                 sql: """
                    UPDATE entries a SET statement = b.statement, signature = b.signature, leaf_hash = b.leaf_hash
                    FROM entries b WHERE (a.idx, b.idx) IN ((10, 20), (20, 10))
                    """,
                 expectedIndex: 10, exportIndex: 8),
            Case(name: "insert a forged row",
                 sql: """
                    INSERT INTO entries (idx, kind, payload_type, statement, signature, key_id, agent, owner, epoch, leaf_hash)
                    SELECT 64, 'decision', '\(PayloadType.decision)', '\\x\(Hex.encode(forged.payload))'::bytea,
                           '\\x\(Hex.encode(forged.signature))'::bytea, '\(forged.keyID)', 'orchestrator', 'mallory', epoch,
                           '\\x\(forgedLeaf)'::bytea FROM lease
                    """,
                 expectedIndex: 64),
            Case(name: "truncate the tail and re-append different entries",
                 sql: "DELETE FROM entries WHERE idx >= 43; DELETE FROM merkle_nodes WHERE last_leaf >= 43",
                 reappend: 21,
                 expectedIndex: 40),
            Case(name: "truncate the tail with its checkpoints and re-append different entries",
                 sql: """
                    DELETE FROM entries WHERE idx >= 43; DELETE FROM merkle_nodes WHERE last_leaf >= 43;
                    DELETE FROM checkpoints WHERE tree_size > 43
                    """,
                 reappend: 21,
                 expectedIndex: 40, onlyAgainstAKeptCheckpoint: true),
            Case(name: "replace a checkpoint",
                 sql: """
                    UPDATE checkpoints SET root_hash = '\\x\(Hex.encode(fakeRoot))'::bytea, body = '\\x\(Hex.encode(fakeBody))'::bytea,
                           signature = '\\x\(Hex.encode(fakeSig.signature))'::bytea WHERE tree_size = 32
                    """,
                 expectedIndex: 31),
            Case(name: "remove the tail (entries and subtrees)",
                 sql: "DELETE FROM entries WHERE idx >= 60; DELETE FROM merkle_nodes WHERE last_leaf >= 60",
                 expectedIndex: 60),
        ]
    }

    @Test(arguments: cases) func verifyNamesTheTamperedIndex(_ c: Case) async throws {
        try await TokenTestSigner.with { signer in
            try await TestDatabase.withFresh { db in
                let kept = try StoredCheckpoint(printed: try await db.fillWithCheckpoints(signer: signer).printed)
                #expect(kept.treeSize == 64)
                let clean = try await LedgerAudit.verifyDatabase(database: db.settings, trustedKeys: signer.trusted, origin: "test.local/ledger",
                                                                 given: [kept], logger: TestEnvironment.logger)
                #expect(clean.problem == nil && clean.entries == 64 && clean.checkpoints == 9)

                let tables = ["entries", "merkle_nodes", "checkpoints"]
                let triggers = [
                    "entries": ["entries_00_append", "entries_append_only", "entries_no_truncate"],
                    "merkle_nodes": ["merkle_nodes_append_only", "merkle_nodes_no_truncate"],
                    "checkpoints": ["checkpoints_00_size", "checkpoints_01_epoch", "checkpoints_append_only", "checkpoints_no_truncate"],
                ]
                let reenable = triggers.flatMap { table, names in names.map { "ALTER TABLE \(table) ENABLE ALWAYS TRIGGER \($0)" } }
                try await db.superuser(tables.map { "ALTER TABLE \($0) DISABLE TRIGGER ALL" }.joined(separator: ";") + ";" + c.sql + ";"
                                       + reenable.joined(separator: ";"))
                if c.reappend > 0 {
                    try await db.withLedger(signer: signer) { ledger in
                        for n in 0..<c.reappend { _ = try await ledger.append(try await signer.entry(1000 + n)) }
                    }
                }
                let given = c.onlyAgainstAKeptCheckpoint ? [kept] : []
                let report = try await LedgerAudit.verifyDatabase(database: db.settings, trustedKeys: signer.trusted, origin: "test.local/ledger",
                                                                  given: given, logger: TestEnvironment.logger)
                let problem = try #require(report.problem, "\(c.name) was not detected")
                #expect(problem.index == c.expectedIndex, "\(c.name): \(problem)")
                if c.onlyAgainstAKeptCheckpoint {
                    let alone = try await LedgerAudit.verifyDatabase(database: db.settings, trustedKeys: signer.trusted, origin: "test.local/ledger",
                                                                     logger: TestEnvironment.logger)
                    #expect(alone.problem == nil, "\(c.name): found without the kept checkpoint, so this case tests nothing new")
                }

                // The same from an export of the tampered ledger, as an auditor would verify it offline.
                let path = NSTemporaryDirectory() + "tampered-export-\(UUID()).txt"
                defer { try? FileManager.default.removeItem(atPath: path) }
                try await db.export(to: path)
                let file = try LedgerAudit.verifyFile(path: path, trustedKeys: signer.trusted, origin: "test.local/ledger", given: given)
                if c.inExport {
                    #expect(file.problem?.index == c.exportIndex ?? c.expectedIndex, "\(c.name), from its export: \(String(describing: file.problem))")
                } else {
                    #expect(file.problem == nil, "\(c.name), from its export: \(String(describing: file.problem))")
                }
            }
        }
    }
}
