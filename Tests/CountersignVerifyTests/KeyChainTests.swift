import Crypto
import CountersignWire
import Testing
@testable import CountersignVerify

/// `KeyChain.verify` with software keys: the rules an offline verifier applies to key events.
@Suite struct KeyChainTests {
    struct SoftKey {
        let key = P256.Signing.PrivateKey()
        var spki: [UInt8] { Array(key.publicKey.derRepresentation) }
        var id: String { KeyID.of(spkiDER: spki) }
        func sign(_ payload: [UInt8]) throws -> SignedStatement {
            let sig = try key.signature(for: SHA256.hash(data: DSSE.pae(payloadType: PayloadType.keyEvent, payload: payload)))
            return SignedStatement(payloadType: PayloadType.keyEvent, payload: payload, signature: Array(sig.derRepresentation), keyID: id)
        }
    }

    func genesis(_ k: SoftKey, at: Int64 = 1000) throws -> SignedStatement {
        var e = KeyEventStatement()
        e.kind = .keyGenerated
        e.newKeyID = k.id
        e.newSPKIDER = k.spki
        e.algorithm = "ecdsa-p256"
        e.occurredAtUnixMs = at
        return try k.sign(e.protobufBytes())
    }

    func transition(from old: SoftKey, to new: SoftKey, at: Int64) -> [UInt8] {
        var e = KeyEventStatement()
        e.kind = .keyTransition
        e.oldKeyID = old.id
        e.newKeyID = new.id
        e.newSPKIDER = new.spki
        e.algorithm = "ecdsa-p256"
        e.occurredAtUnixMs = at
        return e.protobufBytes()
    }

    @Test func followsTransitionsSignedByBothKeys() throws {
        let (a, b, c) = (SoftKey(), SoftKey(), SoftKey())
        let t1 = transition(from: a, to: b, at: 2000), t2 = transition(from: b, to: c, at: 3000)
        let events = [try genesis(a), try a.sign(t1), try b.sign(t1), try b.sign(t2), try c.sign(t2)]
        let set = try KeyChain.verify(firstKeySPKI: a.spki, events: events)
        #expect(set.keys.map(\.keyID) == [a.id, b.id, c.id])
        #expect(set.keys.map(\.notAfterUnixMs) == [2000, 3000, nil])
        #expect(set.active.keyID == c.id)
        // Statements by a retired key verify within its window, not after it.
        let old = try a.sign([9])
        try set.verify(old, atUnixMs: 1500)
        #expect(throws: VerificationError.self) { try set.verify(old, atUnixMs: 2500) }
    }

    @Test func refusesATransitionSignedByOneKeyOnly() throws {
        let (a, b) = (SoftKey(), SoftKey())
        let t = transition(from: a, to: b, at: 2000)
        #expect(throws: VerificationError.self) { _ = try KeyChain.verify(firstKeySPKI: a.spki, events: [try genesis(a), try a.sign(t)]) }
        // Signed by the new key only (someone who holds just the new key announces it): refused.
        #expect(throws: VerificationError.self) { _ = try KeyChain.verify(firstKeySPKI: a.spki, events: [try genesis(a), try b.sign(t), try b.sign(t)]) }
    }

    @Test func refusesAKeyThatWasNotAnnouncedByTheActiveKey() throws {
        let (a, b, mallory) = (SoftKey(), SoftKey(), SoftKey())
        let forged = transition(from: mallory, to: b, at: 2000)
        #expect(throws: VerificationError.self) {
            _ = try KeyChain.verify(firstKeySPKI: a.spki, events: [try genesis(a), try mallory.sign(forged), try b.sign(forged)])
        }
        // A genesis for another key than the pinned one.
        #expect(throws: VerificationError.self) { _ = try KeyChain.verify(firstKeySPKI: a.spki, events: [try genesis(mallory)]) }
        #expect(throws: VerificationError.self) { _ = try KeyChain.verify(firstKeySPKI: a.spki, events: []) }
    }
}

/// The custody messages survive a round trip through the hand-written codec.
@Suite struct CustodyMessageTests {
    @Test func roundTrips() throws {
        var info = KeyInfo(keyID: "ab", spkiDER: [1, 2, 3], algorithm: "ecdsa-p256", notBeforeUnixMs: 1_700_000_000_000,
                           notAfterUnixMs: 0, status: .active)
        #expect(try KeyInfo(protobuf: info.protobufBytes()) == info)
        info.status = .retired
        info.notAfterUnixMs = -1
        #expect(try KeyInfo(protobuf: info.protobufBytes()) == info)

        var e = KeyEventStatement()
        e.kind = .keyTransition
        e.oldKeyID = "old"; e.newKeyID = "new"; e.newSPKIDER = [0x30, 0x59]; e.algorithm = "rsa-pss-4096"
        e.proposalID = "p"; e.proposedBy = "officer-1"; e.approvedBy = "officer-2"; e.reason = "why"
        e.occurredAtUnixMs = 3; e.proposedAtUnixMs = 2; e.expiresAtUnixMs = 5
        #expect(try KeyEventStatement(protobuf: e.protobufBytes()) == e)

        let t = SignedTransition(statement: e.protobufBytes(), signatures: [Signature(keyID: "old", signature: [1]), Signature(keyID: "new", signature: [2])])
        let list = ListKeysResponse(keys: [info, info], transitions: [t])
        #expect(try ListKeysResponse(protobuf: list.protobufBytes()) == list)
        #expect(try ListKeysRequest(protobuf: ListKeysRequest().protobufBytes()) == ListKeysRequest())

        let req = ProposeRotationRequest(reason: "r", algorithm: "ecdsa-p256")
        #expect(try ProposeRotationRequest(protobuf: req.protobufBytes()) == req)
        var p = RotationProposal()
        p.proposalID = "id"; p.proposedBy = "o"; p.proposedAtUnixMs = 1; p.expiresAtUnixMs = 2; p.algorithm = "a"; p.reason = "r"
        #expect(try RotationProposal(protobuf: p.protobufBytes()) == p)
        let a = ApproveRotationRequest(proposalID: "id")
        #expect(try ApproveRotationRequest(protobuf: a.protobufBytes()) == a)
        let result = RotationResult(newKey: info, transition: t)
        #expect(try RotationResult(protobuf: result.protobufBytes()) == result)
    }

    @Test func encodingIsInFieldOrderAndSkipsDefaults() throws {
        var e = KeyEventStatement()
        #expect(e.protobufBytes().isEmpty)
        e.kind = .keyGenerated
        e.occurredAtUnixMs = 1
        // field 1 varint 1, field 10 varint 1
        #expect(e.protobufBytes() == [0x08, 0x01, 0x50, 0x01])
        // Unknown fields are skipped on decode.
        let withUnknown: [UInt8] = [0x08, 0x01, 0xA2, 0x06, 0x01, 0x00, 0x50, 0x01]
        #expect(try KeyEventStatement(protobuf: withUnknown) == e)
    }
}
