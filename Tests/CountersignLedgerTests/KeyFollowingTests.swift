import CountersignTestSupport
import CountersignVerify
import Foundation
import Testing
@testable import CountersignLedger

/// `ledger verify` follows key transitions: a key is trusted from the entry after a key-event entry,
/// signed by a trusted key, that names it.
@Suite struct KeyFollowingTests {
    static func transition(to next: SoftwareSigner) -> [UInt8] {
        let spki = next.verificationKey.spkiDER
        let id = next.verificationKey.keyID
        var s: [UInt8] = [0x08, 0x03]
        s += [0x1A, UInt8(id.utf8.count)] + Array(id.utf8)
        s += [0x22, UInt8(spki.count)] + spki
        return s
    }

    static func stored(_ index: Int, _ statement: SignedStatement, kind: EntryKind = .decision) -> StoredEntry {
        StoredEntry(index: UInt64(index), kind: kind, statement: statement, agent: "a", owner: "o", requestID: nil, fingerprint: nil,
                    epoch: 1, leafHash: Merkle.leafHash(statement.payload), createdAt: Date())
    }

    @Test func followsATransitionSignedByTheTrustedKey() {
        let first = SoftwareSigner(), second = SoftwareSigner()
        let event = Self.transition(to: second)
        let entries = [
            Self.stored(0, first.entry(0).statement),
            Self.stored(1, first.signNow(payloadType: PayloadType.keyEvent, payload: event), kind: .keyEvent),
            Self.stored(2, second.signNow(payloadType: PayloadType.keyEvent, payload: event), kind: .keyEvent),
            Self.stored(3, second.entry(3).statement),
        ]
        var verifier = LedgerVerifier(trustedKeys: first.trusted)
        #expect(verifier.add(entries: entries) == nil)
        #expect(verifier.trustedFrom[second.verificationKey.keyID] == 2)
    }

    @Test func refusesTheNewKeyBeforeItsTransitionAndAnUntrustedTransition() {
        let first = SoftwareSigner(), second = SoftwareSigner(), mallory = SoftwareSigner()
        var early = LedgerVerifier(trustedKeys: first.trusted)
        let p = early.add(entries: [
            Self.stored(0, second.entry(0).statement),
            Self.stored(1, first.signNow(payloadType: PayloadType.keyEvent, payload: Self.transition(to: second)), kind: .keyEvent),
        ])
        #expect(p?.index == 0)
        var forged = LedgerVerifier(trustedKeys: first.trusted)
        let q = forged.add(entries: [
            Self.stored(0, first.entry(0).statement),
            Self.stored(1, mallory.signNow(payloadType: PayloadType.keyEvent, payload: Self.transition(to: mallory)), kind: .keyEvent),
            Self.stored(2, mallory.entry(2).statement),
        ])
        #expect(q?.index == 1)
    }
}
