import CountersignTestSupport
import CountersignConfig
import CountersignVerify
import CountersignWire
import Foundation
import Logging
import Testing
@testable import CountersignSigner

extension TokenTests {
    private func makeCustodian(_ signer: TokenSigner, log: any KeyEventLog, clock: TestClock,
                           rotationDays: Int = 90, ttl: Int = 600) -> KeyCustodian {
        var logger = Logger(label: "test.custody")
        logger.logLevel = .warning
        return KeyCustodian(signer: signer, log: log,
                            settings: tokens.settings("cs-test-custody", rotationDays: rotationDays, proposalTTLSeconds: ttl),
                            logger: logger, now: clock.clock)
    }

    private func tempLogPath() -> String { tokens.root + "/key-events-\(UUID().uuidString).jsonl" }

    @Test func aRotationChainOfThreeKeysVerifiesFromTheFirstKey() async throws {
        let signer = try tokens.signer("cs-test-custody")
        defer { signer.shutdown() }
        let clock = TestClock()
        let log = FileKeyEventLog(path: tempLogPath())
        let custodian = makeCustodian(signer, log: log, clock: clock)

        let first = try await custodian.bootstrap(by: "officer-1")
        #expect(first.status == .active)
        #expect(try await signer.activeKeyID == first.keyID)
        await #expect(throws: SignerError.self) { _ = try await custodian.bootstrap(by: "officer-1") }

        clock.advance(days: 10)
        let p1 = try await custodian.propose(by: "officer-1", reason: "drill")
        clock.advance(seconds: 60)
        let r1 = try await custodian.approve(proposalID: p1.proposalID, by: "officer-2")
        let second = try #require(r1.newKey)
        #expect(second.keyID != first.keyID)
        #expect(try await signer.activeKeyID == second.keyID)

        // The second rotation is due by age: 90 days later, nobody asks.
        clock.advance(days: 89)
        #expect(try await custodian.rotateIfDue() == nil)
        clock.advance(days: 2)
        let r2 = try #require(try await custodian.rotateIfDue())
        let third = try #require(r2.newKey)
        #expect(try await signer.activeKeyID == third.keyID)

        // A verifier that trusts only the first key follows both rotations from the log on disk.
        let events = try await FileKeyEventLog(path: log.path).readAll()
        #expect(events.count == 6)  // genesis, proposal, two transitions signed twice
        let set = try KeyChain.verify(firstKeySPKI: first.spkiDER, events: events)
        #expect(set.keys.map(\.keyID) == [first.keyID, second.keyID, third.keyID])
        #expect(set.transitions == 2)
        #expect(set.active.keyID == third.keyID)
        let ends: [Int64?] = set.keys.map(\.notAfterUnixMs)
        #expect(ends[0] != nil)
        #expect(ends[1] != nil)
        #expect(ends[2] == nil)

        // A decision signed now verifies with the key set; one signed by a retired key still verifies.
        let decision = try await signer.sign(payloadType: PayloadType.decision, payload: [1, 2, 3])
        try set.verify(decision)

        // ListKeys: three keys (two retired), two transitions each signed by the old and the new key.
        let listed = await custodian.listKeys()
        #expect(listed.keys.map(\.status) == [.retired, .retired, .active])
        #expect(listed.transitions.count == 2)
        #expect(listed.transitions.allSatisfy { $0.signatures.count == 2 })
        #expect(try ListKeysResponse(protobuf: listed.protobufBytes()) == listed)
        // What ListKeys answers is enough to follow both rotations from the pinned first key
        // (`countersign audit`); a transition signed by its old key alone hands over nothing, and
        // another pinned key follows none of it.
        let fromListKeys = try KeyChain.verify(firstKeySPKI: first.spkiDER, listed: listed)
        #expect(fromListKeys.keys.map(\.keyID) == [first.keyID, second.keyID, third.keyID])
        #expect(fromListKeys.active.keyID == third.keyID)
        try fromListKeys.verify(decision)
        var halfSigned = listed
        halfSigned.transitions[1].signatures.removeLast()
        #expect(throws: VerificationError.self) { try KeyChain.verify(firstKeySPKI: first.spkiDER, listed: halfSigned) }
        #expect(throws: VerificationError.self) { try KeyChain.verify(firstKeySPKI: second.spkiDER, listed: listed) }

        // A second custodian over the same log and token reaches the same state.
        let again = makeCustodian(signer, log: FileKeyEventLog(path: log.path), clock: clock)
        try await again.load()
        #expect(await again.activeKey?.keyID == third.keyID)

        // Tampering with one byte of the log breaks the chain.
        var tampered = events
        tampered[3].payload[tampered[3].payload.count - 1] ^= 1
        #expect(throws: VerificationError.self) { _ = try KeyChain.verify(firstKeySPKI: first.spkiDER, events: tampered) }
        // A verifier pinned to another key refuses the whole history.
        #expect(throws: VerificationError.self) { _ = try KeyChain.verify(firstKeySPKI: second.spkiDER, events: events) }
    }

    @Test func selfApprovalExpiredAndUnknownProposalsAreRefused() async throws {
        let signer = try tokens.signer("cs-test-custody")
        defer { signer.shutdown() }
        let clock = TestClock()
        let custodian = makeCustodian(signer, log: InMemoryKeyEventLog(), clock: clock, ttl: 600)
        await #expect(throws: SignerError.self) { _ = try await custodian.propose(by: "officer-1", reason: "too early") }
        let first = try await custodian.bootstrap(by: "officer-1")

        let p = try await custodian.propose(by: "officer-1", reason: "compromise drill")
        #expect(p.expiresAtUnixMs == p.proposedAtUnixMs + 600_000)
        let selfApproval = await #expect(throws: SignerError.self) { _ = try await custodian.approve(proposalID: p.proposalID, by: "officer-1") }
        #expect(selfApproval?.code == .selfApproval)
        #expect(selfApproval?.grpcStatusCode == 7)

        let unknown = await #expect(throws: SignerError.self) { _ = try await custodian.approve(proposalID: "nope", by: "officer-2") }
        #expect(unknown?.code == .unknownProposal)

        clock.advance(seconds: 601)
        let expired = await #expect(throws: SignerError.self) { _ = try await custodian.approve(proposalID: p.proposalID, by: "officer-2") }
        #expect(expired?.code == .proposalExpired)
        #expect(await custodian.activeKey?.keyID == first.keyID)
        #expect(try await signer.activeKeyID == first.keyID)

        // A fresh proposal approved in time by another officer rotates; it cannot be used twice.
        let q = try await custodian.propose(by: "officer-2", reason: "again")
        clock.advance(seconds: 599)
        let r = try await custodian.approve(proposalID: q.proposalID, by: "officer-1")
        #expect(r.newKey?.keyID != first.keyID)
        let twice = await #expect(throws: SignerError.self) { _ = try await custodian.approve(proposalID: q.proposalID, by: "officer-3") }
        #expect(twice?.code == .unknownProposal)
        let transition = try KeyEventStatement(protobuf: try #require(r.transition).statement)
        #expect(transition.proposedBy == "officer-2")
        #expect(transition.approvedBy == "officer-1")
        #expect(transition.oldKeyID == first.keyID)
    }

    @Test func concurrentKeyOperationsNeverForkTheChain() async throws {
        let signer = try tokens.signer("cs-test-custody")
        defer { signer.shutdown() }
        let clock = TestClock()
        let log = InMemoryKeyEventLog()
        let custodian = makeCustodian(signer, log: log, clock: clock, rotationDays: 1, ttl: 7 * 86_400)
        let first = try await custodian.bootstrap(by: "officer-1")
        let p = try await custodian.propose(by: "officer-1", reason: "race")
        clock.advance(days: 2)  // the scheduler's rotation is due too
        async let a = Result(catching: { try await custodian.approve(proposalID: p.proposalID, by: "officer-2") })
        async let b = Result(catching: { try await custodian.approve(proposalID: p.proposalID, by: "officer-3") })
        async let c = Result(catching: { try await custodian.rotateIfDue() })
        let results = await [a.map { Optional($0) }, b.map { Optional($0) }, c]
        let succeeded = results.compactMap { try? $0.get() }.compactMap { $0 }
        #expect(succeeded.count >= 1)
        for case .failure(let e) in results {
            let code = (e as? SignerError)?.code
            #expect(code == .rotationInProgress || code == .unknownProposal, "\(String(reflecting: e))")
        }
        let set = try KeyChain.verify(firstKeySPKI: first.spkiDER, events: await log.readAll())
        #expect(set.transitions == succeeded.count)
        #expect(try await signer.activeKeyID == set.active.keyID)
    }

    @Test func theFileLogIgnoresATornLastLineAndRefusesAGarbledOne() async throws {
        let path = tempLogPath()
        let log = FileKeyEventLog(path: path)
        let s = SignedStatement(payloadType: PayloadType.keyEvent, payload: [1, 2], signature: [3], keyID: "ab")
        try await log.append(s)
        try await log.append(s)
        #expect(try await log.readAll() == [s, s])
        let h = try #require(FileHandle(forWritingAtPath: path))
        h.seekToEndOfFile()
        h.write(Data("{\"key_id\":\"ab\",\"pay".utf8))
        try h.close()
        #expect(try await log.readAll() == [s, s])
        try Data("garbage\n".utf8).append(to: path)
        await #expect(throws: SignerError.self) { _ = try await log.readAll() }
    }
}

extension Data {
    fileprivate func append(to path: String) throws {
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        h.seekToEndOfFile()
        h.write(self)
        try h.close()
    }
}

extension Result where Failure == any Error {
    fileprivate init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
