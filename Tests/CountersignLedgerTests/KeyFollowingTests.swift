import CountersignTestSupport
import CountersignVerify
import Foundation
import Testing
@testable import CountersignLedger

/// `ledger verify` follows key transitions: a key is trusted from the entry after a key-event entry,
/// signed by a trusted key, that names it. Countersign's keys are generated in the SoftHSM test
/// token; only mallory, who is not Countersign, has a key of her own outside it.
@Suite struct KeyFollowingTests {
    static func transition(to next: VerificationKey) -> [UInt8] {
        let spki = next.spkiDER
        let id = next.keyID
        var s: [UInt8] = [0x08, 0x03]
        s += [0x1A, UInt8(id.utf8.count)] + Array(id.utf8)
        s += [0x22, UInt8(spki.count)] + spki
        return s
    }

    static func stored(_ index: Int, _ statement: SignedStatement, kind: EntryKind = .decision) -> StoredEntry {
        StoredEntry(index: UInt64(index), kind: kind, statement: statement, agent: "a", owner: "o", requestID: nil, fingerprint: nil,
                    epoch: 1, leafHash: Merkle.leafHash(statement.payload), createdAt: Date())
    }

    @Test func followsATransitionSignedByTheTrustedKey() async throws {
        try await TokenTestSigner.with { first in
            let second = try await first.newKey()
            #expect(first.keyID != second.keyID)
            let event = Self.transition(to: second.verificationKey)
            let entries = [
                Self.stored(0, try await first.entry(0).statement),
                Self.stored(1, try await first.sign(payloadType: PayloadType.keyEvent, payload: event), kind: .keyEvent),
                Self.stored(2, try await second.sign(payloadType: PayloadType.keyEvent, payload: event), kind: .keyEvent),
                Self.stored(3, try await second.entry(3).statement),
            ]
            var verifier = LedgerVerifier(trustedKeys: first.trusted)
            #expect(verifier.add(entries: entries) == nil)
            #expect(verifier.trustedFrom[second.keyID] == 2)
            // Without the transition, the second key's first statement is where it fails.
            var unfollowed = LedgerVerifier(trustedKeys: first.trusted)
            #expect(unfollowed.add(entries: [entries[0], entries[3]].enumerated().map { Self.stored($0, $1.statement) })?.index == 1)
        }
    }

    @Test func refusesTheNewKeyBeforeItsTransitionAndAnUntrustedTransition() async throws {
        try await TokenTestSigner.with { first in
            let second = try await first.newKey()
            let mallory = OutsideKey()
            var early = LedgerVerifier(trustedKeys: first.trusted)
            let p = early.add(entries: [
                Self.stored(0, try await second.entry(0).statement),
                Self.stored(1, try await first.sign(payloadType: PayloadType.keyEvent, payload: Self.transition(to: second.verificationKey)), kind: .keyEvent),
            ])
            #expect(p?.index == 0)
            var forged = LedgerVerifier(trustedKeys: first.trusted)
            let malloryKey = mallory.verificationKey
            let q = forged.add(entries: [
                Self.stored(0, try await first.entry(0).statement),
                Self.stored(1, mallory.sign(payloadType: PayloadType.keyEvent, payload: Self.transition(to: malloryKey)), kind: .keyEvent),
                Self.stored(2, mallory.sign(payloadType: PayloadType.decision, payload: Array("mallory approves".utf8))),
            ])
            #expect(q?.index == 1)
        }
    }

    /// Through the database: statements and checkpoints signed by a first token key, a transition
    /// to a second token key, which then signs both. Trusting only the first key, the whole ledger
    /// verifies (the retired key's entries included); trusting only the second, it fails at 0.
    @Test func verifyFollowsARotationInTheDatabase() async throws {
        try await TokenTestSigner.with { first in
            try await TestDatabase.withFresh { db in
                let second = try await first.newKey()
                let event = Self.transition(to: second.verificationKey)
                try await db.withLedger(signer: first) { ledger in
                    for n in 0..<5 { _ = try await ledger.append(try await first.entry(n)) }
                    #expect(try await ledger.checkpoint().keyID == first.keyID)
                    for signer in [first, second] {
                        let signed = try await signer.sign(payloadType: PayloadType.keyEvent, payload: event)
                        _ = try await ledger.append(LedgerEntry(kind: .keyEvent, statement: signed, agent: "officer-1", owner: "officer-2"))
                    }
                }
                // The node signs with the new key from now on.
                try await db.withLedger(signer: second) { ledger in
                    for n in 5..<10 { _ = try await ledger.append(try await second.entry(n)) }
                    #expect(try await ledger.checkpoint().keyID == second.keyID)
                }
                let report = try await LedgerAudit.verifyDatabase(database: db.settings, trustedKeys: first.trusted, origin: "test.local/ledger", logger: TestEnvironment.logger)
                #expect(report.problem == nil)
                #expect(report.entries == 12 && report.checkpoints == 2)
                #expect(Set(report.trustedKeyIDs) == [first.keyID, second.keyID])
                let wrong = try await LedgerAudit.verifyDatabase(database: db.settings, trustedKeys: second.trusted, origin: "test.local/ledger", logger: TestEnvironment.logger)
                #expect(wrong.problem?.index == 0)
            }
        }
    }
}
