public import CountersignConfig
public import CountersignVerify
public import CountersignWire
import Foundation
public import Logging

/// The keyring and its custody: one active key, retired keys kept for verification, and the
/// rotations between them — every change a key-event statement in a ``KeyEventLog``.
///
/// The keyring is never stored as such: ``load()`` folds the key events with
/// ``KeyChain/verify(firstKeySPKI:events:)`` (the same check an offline verifier runs), so a log
/// that does not verify is refused rather than trusted.
///
/// Rotation happens when the active key is older than `token.rotation_days`
/// (``rotateIfDue()``, for the rotation scheduler), or under dual control: one officer
/// ``propose(by:reason:algorithm:)``s, a different officer ``approve(proposalID:by:)``s within
/// `token.proposal_ttl_seconds`. The new key is generated in the token and announced by a
/// transition statement that the old key and the new key both sign (appended twice, old key first).
///
/// Officer ids are the authenticated principal ids: the server passes the principal of the
/// officer's pinned certificate; nothing here authenticates anyone.
public actor KeyCustodian {
    /// Milliseconds since the Unix epoch; a parameter so that tests can move time.
    public typealias Clock = @Sendable () -> Int64

    /// The wall clock.
    public static let systemClock: Clock = { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }

    /// The principal recorded as proposer of a rotation made because of the key's age.
    public static let schedulerPrincipal = "scheduler"

    public let signer: TokenSigner
    public let log: any KeyEventLog
    private let settings: TokenSettings
    private let now: Clock
    private let logger: Logger

    private var events: [SignedStatement] = []
    private var keySet: KeyChain.KeySet?
    private var proposals: [String: RotationProposal] = [:]
    private var usedProposals: Set<String> = []
    private var busy = false

    /// - Parameters:
    ///   - signer: the token signer whose active key this custodian sets.
    ///   - log: where key events are kept (the ledger in the server).
    ///   - settings: `key_algorithm`, `rotation_days` and `proposal_ttl_seconds` are used.
    ///   - now: the clock, ``systemClock`` unless given.
    public init(signer: TokenSigner, log: any KeyEventLog, settings: TokenSettings, logger: Logger,
                now: @escaping Clock = KeyCustodian.systemClock) {
        self.signer = signer
        self.log = log
        self.settings = settings
        self.logger = logger
        self.now = now
    }

    // MARK: state

    /// Reads and verifies the key events and makes the last key the signer's active key.
    /// A transition that a crash left signed by the old key only is completed first, when the
    /// token holds the new key.
    /// - Throws: ``SignerError`` with code `keyChain` when the events do not verify,
    ///   `keyEventLog` when the log cannot be read.
    public func load() async throws {
        try await exclusive { try await self.reload() }
    }

    /// One change at a time: a second call while another is running (it may be suspended in the
    /// token or the log) is refused with `rotationInProgress` instead of acting on a stale keyring.
    private func exclusive<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        guard !busy else { throw SignerError(.rotationInProgress, "another key operation is in progress; try again") }
        busy = true
        defer { busy = false }
        return try await body()
    }

    private func reload() async throws {
        var all = try await log.readAll()
        if let completed = try await completeHalfTransition(all) {
            all.append(completed)
        }
        try fold(all)
        if let active = keySet?.active {
            try signer.setActiveKey(active.keyID)
        }
    }

    /// Whether the keyring has its first key.
    public var isBootstrapped: Bool { keySet != nil }

    /// The active key, if the keyring has one.
    public var activeKey: KeyInfo? { keySet.map { info($0.active) } }

    /// DER SPKI of the first key: what a verifier pins.
    public var firstKeySPKI: [UInt8]? { keySet?.keys.first?.key.spkiDER }

    /// Every key-event statement, oldest first.
    public var keyEvents: [SignedStatement] { events }

    /// Proposals waiting for a second officer (expired ones included until they are replaced).
    public var pendingProposals: [RotationProposal] {
        proposals.values.sorted { $0.proposedAtUnixMs < $1.proposedAtUnixMs }
    }

    /// Every key with its validity, and the signed transitions between them (`ListKeys`).
    public func listKeys() -> ListKeysResponse {
        guard let keySet else { return ListKeysResponse() }
        var transitions: [SignedTransition] = []
        var i = 0
        while i < events.count {
            if let e = try? KeyEventStatement(protobuf: events[i].payload), e.kind == .keyTransition, i + 1 < events.count,
               events[i + 1].payload == events[i].payload {
                transitions.append(SignedTransition(statement: events[i].payload, signatures: [
                    Signature(keyID: events[i].keyID, signature: events[i].signature),
                    Signature(keyID: events[i + 1].keyID, signature: events[i + 1].signature),
                ]))
                i += 2
            } else {
                i += 1
            }
        }
        return ListKeysResponse(keys: keySet.keys.map(info), transitions: transitions)
    }

    /// Whether the active key is older than `token.rotation_days`.
    public func isRotationDue() -> Bool {
        guard let active = keySet?.active else { return false }
        return now() - active.notBeforeUnixMs >= Int64(settings.rotationDays) * 86_400_000
    }

    // MARK: changes

    /// The key ceremony's first step: generates the first key in the token and records a
    /// `KEY_GENERATED` event signed by that key.
    /// - Parameters:
    ///   - officer: who ran the ceremony.
    ///   - algorithm: `token.key_algorithm` unless given.
    /// - Throws: ``SignerError`` `alreadyBootstrapped` when the keyring has a key.
    public func bootstrap(by officer: String, algorithm: KeyAlgorithm? = nil) async throws -> KeyInfo {
        try await exclusive { try await self.bootstrapLocked(by: officer, algorithm: algorithm) }
    }

    private func bootstrapLocked(by officer: String, algorithm: KeyAlgorithm?) async throws -> KeyInfo {
        try await reload()
        guard keySet == nil, events.isEmpty else {
            throw SignerError(.alreadyBootstrapped, "the keyring already has a key; rotate it instead")
        }
        let algorithm = algorithm ?? settings.keyAlgorithm
        let key = try await signer.generateKey(algorithm: algorithm)
        var event = KeyEventStatement()
        event.kind = .keyGenerated
        event.newKeyID = key.keyID
        event.newSPKIDER = key.spkiDER
        event.algorithm = algorithm.rawValue
        event.proposedBy = officer
        event.reason = "key ceremony: first key"
        event.occurredAtUnixMs = now()
        let signed = try await signer.sign(payloadType: PayloadType.keyEvent, payload: event.protobufBytes(), keyID: key.keyID)
        try await log.append(signed)
        try fold(events + [signed])
        try signer.setActiveKey(key.keyID)
        logger.notice("keyring bootstrapped", metadata: ["cs.key_id": "\(key.keyID)", "cs.principal": "\(officer)"])
        return activeKey!
    }

    /// First step of dual control: records a rotation proposal, signed by the active key.
    /// - Parameters:
    ///   - officer: the authenticated officer principal id.
    ///   - reason: why (recorded in the key events).
    ///   - algorithm: of the new key; `token.key_algorithm` unless given.
    /// - Returns: the proposal; another officer must approve it before `expiresAtUnixMs`.
    /// - Throws: ``SignerError`` (`notBootstrapped`, `invalidArgument`, `unavailable`).
    public func propose(by officer: String, reason: String, algorithm: KeyAlgorithm? = nil) async throws -> RotationProposal {
        guard !officer.isEmpty else { throw SignerError(.invalidArgument, "an officer id is required") }
        // The reason goes into a signed key event, which every node reads at every start.
        guard reason.utf8.count <= Self.maxReasonBytes else {
            throw SignerError(.invalidArgument, "reason must be at most \(Self.maxReasonBytes) bytes")
        }
        return try await exclusive { try await self.proposeLocked(by: officer, reason: reason, algorithm: algorithm) }
    }

    /// Longest reason a rotation proposal may give.
    public static let maxReasonBytes = 1024

    private func proposeLocked(by officer: String, reason: String, algorithm: KeyAlgorithm?) async throws -> RotationProposal {
        try await reload()
        guard let active = keySet?.active else { throw SignerError(.notBootstrapped, "the keyring has no key yet") }
        var id = [UInt8](repeating: 0, count: 12)
        for i in id.indices { id[i] = UInt8.random(in: 0...255) }
        let at = now()
        var event = KeyEventStatement()
        event.kind = .rotationProposed
        event.oldKeyID = active.keyID
        event.algorithm = (algorithm ?? settings.keyAlgorithm).rawValue
        event.proposalID = Hex.encode(id)
        event.proposedBy = officer
        event.reason = reason
        event.occurredAtUnixMs = at
        event.proposedAtUnixMs = at
        event.expiresAtUnixMs = at + Int64(settings.proposalTTLSeconds) * 1000
        let signed = try await signer.sign(payloadType: PayloadType.keyEvent, payload: event.protobufBytes(), keyID: active.keyID)
        try await log.append(signed)
        try fold(events + [signed])
        logger.notice("rotation proposed", metadata: ["cs.proposal_id": "\(event.proposalID)", "cs.principal": "\(officer)"])
        return proposals[event.proposalID]!
    }

    /// Second step of dual control: a different officer approves; the key rotates now.
    /// - Parameters:
    ///   - proposalID: from ``propose(by:reason:algorithm:)``.
    ///   - officer: the authenticated officer principal id; must differ from the proposer.
    /// - Throws: ``SignerError``: `unknownProposal` (no such proposal, or already used),
    ///   `proposalExpired`, `selfApproval`, `rotationInProgress`, `unavailable`.
    public func approve(proposalID: String, by officer: String) async throws -> RotationResult {
        guard !officer.isEmpty else { throw SignerError(.invalidArgument, "an officer id is required") }
        return try await exclusive { try await self.approveLocked(proposalID: proposalID, by: officer) }
    }

    private func approveLocked(proposalID: String, by officer: String) async throws -> RotationResult {
        try await reload()
        guard let proposal = proposals[proposalID] else {
            if usedProposals.contains(proposalID) {
                throw SignerError(.unknownProposal, "proposal \(proposalID) was already approved")
            }
            throw SignerError(.unknownProposal, "no rotation proposal \(proposalID)")
        }
        guard now() <= proposal.expiresAtUnixMs else {
            throw SignerError(.proposalExpired, "proposal \(proposalID) expired; propose again")
        }
        guard proposal.proposedBy != officer else {
            throw SignerError(.selfApproval, "officer \(officer) proposed this rotation; a different officer must approve it")
        }
        guard let algorithm = KeyAlgorithm(rawValue: proposal.algorithm) else {
            throw SignerError(.invalidArgument, "proposal \(proposalID) names an unknown algorithm \(proposal.algorithm)")
        }
        return try await rotate(algorithm: algorithm, proposalID: proposalID, proposedBy: proposal.proposedBy,
                                proposedAt: proposal.proposedAtUnixMs, approvedBy: officer, reason: proposal.reason)
    }

    /// Rotates when the active key is older than `token.rotation_days`. The rotation scheduler
    /// calls this periodically.
    /// - Returns: the rotation, or `nil` when none was due.
    public func rotateIfDue() async throws -> RotationResult? {
        try await exclusive { try await self.rotateIfDueLocked() }
    }

    private func rotateIfDueLocked() async throws -> RotationResult? {
        try await reload()
        guard isRotationDue() else { return nil }
        return try await rotate(algorithm: settings.keyAlgorithm, proposalID: "", proposedBy: Self.schedulerPrincipal,
                                proposedAt: now(), approvedBy: "",
                                reason: "scheduled: the active key is \(settings.rotationDays) days old")
    }

    // MARK: internals

    private func rotate(algorithm: KeyAlgorithm, proposalID: String, proposedBy: String, proposedAt: Int64,
                        approvedBy: String, reason: String) async throws -> RotationResult {
        guard let old = keySet?.active else { throw SignerError(.notBootstrapped, "the keyring has no key yet") }
        let key = try await signer.generateKey(algorithm: algorithm)
        var event = KeyEventStatement()
        event.kind = .keyTransition
        event.oldKeyID = old.keyID
        event.newKeyID = key.keyID
        event.newSPKIDER = key.spkiDER
        event.algorithm = algorithm.rawValue
        event.proposalID = proposalID
        event.proposedBy = proposedBy
        event.approvedBy = approvedBy
        event.reason = reason
        event.occurredAtUnixMs = max(now(), old.notBeforeUnixMs)
        event.proposedAtUnixMs = proposedAt
        let payload = event.protobufBytes()
        let byOld = try await signer.sign(payloadType: PayloadType.keyEvent, payload: payload, keyID: old.keyID)
        let byNew = try await signer.sign(payloadType: PayloadType.keyEvent, payload: payload, keyID: key.keyID)
        try fold(events + [byOld, byNew])  // check before anything is written
        try await log.append(byOld)
        try await log.append(byNew)
        try signer.setActiveKey(key.keyID)
        logger.notice("signing key rotated", metadata: [
            "cs.old_key_id": "\(old.keyID)", "cs.key_id": "\(key.keyID)", "cs.proposal_id": "\(proposalID)",
            "cs.proposed_by": "\(proposedBy)", "cs.approved_by": "\(approvedBy)",
        ])
        return RotationResult(newKey: activeKey!, transition: SignedTransition(statement: payload, signatures: [
            Signature(keyID: byOld.keyID, signature: byOld.signature),
            Signature(keyID: byNew.keyID, signature: byNew.signature),
        ]))
    }

    /// A transition at the end of the log signed by the old key only (a crash between the two
    /// appends): sign it with the new key, when the token holds it, and append that.
    private func completeHalfTransition(_ all: [SignedStatement]) async throws -> SignedStatement? {
        guard let last = all.last, let event = try? KeyEventStatement(protobuf: last.payload), event.kind == .keyTransition,
              last.keyID == event.oldKeyID, signer.tokenKeys.contains(where: { $0.keyID == event.newKeyID }) else { return nil }
        let signed = try await signer.sign(payloadType: PayloadType.keyEvent, payload: last.payload, keyID: event.newKeyID)
        try await log.append(signed)
        logger.warning("completed a key transition that was signed by the old key only", metadata: ["cs.key_id": "\(event.newKeyID)"])
        return signed
    }

    private func fold(_ all: [SignedStatement]) throws {
        guard let first = all.first else {
            events = []
            keySet = nil
            proposals = [:]
            usedProposals = []
            return
        }
        guard let genesis = try? KeyEventStatement(protobuf: first.payload) else {
            throw SignerError(.keyChain, "the first key event is unreadable")
        }
        let set: KeyChain.KeySet
        do {
            set = try KeyChain.verify(firstKeySPKI: genesis.newSPKIDER, events: all)
        } catch {
            throw SignerError(.keyChain, "the key events do not verify: \(error)", cause: error)
        }
        var open: [String: RotationProposal] = [:]
        var used: Set<String> = []
        for s in all {
            guard let e = try? KeyEventStatement(protobuf: s.payload) else { continue }
            if e.kind == .rotationProposed {
                var p = RotationProposal()
                p.proposalID = e.proposalID
                p.proposedBy = e.proposedBy
                p.proposedAtUnixMs = e.proposedAtUnixMs
                p.expiresAtUnixMs = e.expiresAtUnixMs
                p.algorithm = e.algorithm
                p.reason = e.reason
                if !used.contains(e.proposalID) { open[e.proposalID] = p }
            } else if e.kind == .keyTransition {
                // A rotation (by proposal or schedule) supersedes every proposal made before it.
                for id in open.keys { used.insert(id) }
                if !e.proposalID.isEmpty { used.insert(e.proposalID) }
                open = [:]
            }
        }
        events = all
        keySet = set
        proposals = open
        usedProposals = used
    }

    private func info(_ k: KeyChain.Key) -> KeyInfo {
        KeyInfo(keyID: k.keyID, spkiDER: k.key.spkiDER, algorithm: k.algorithmName, notBeforeUnixMs: k.notBeforeUnixMs,
                notAfterUnixMs: k.notAfterUnixMs ?? 0, status: k.isActive ? .active : .retired)
    }
}

extension KeyCustodian {
    /// `Custody.ProposeRotation` for the authenticated officer `principal`.
    /// - Throws: ``SignerError`` (`invalidArgument` for an unknown algorithm name).
    public func propose(_ request: ProposeRotationRequest, by principal: String) async throws -> RotationProposal {
        var algorithm: KeyAlgorithm?
        if !request.algorithm.isEmpty {
            guard let a = KeyAlgorithm(rawValue: request.algorithm) else {
                throw SignerError(.invalidArgument, "unknown algorithm \(request.algorithm); use one of \(KeyAlgorithm.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            algorithm = a
        }
        return try await propose(by: principal, reason: request.reason, algorithm: algorithm)
    }

    /// `Custody.ApproveRotation` for the authenticated officer `principal`.
    public func approve(_ request: ApproveRotationRequest, by principal: String) async throws -> RotationResult {
        try await approve(proposalID: request.proposalID, by: principal)
    }

    /// The rotation scheduler: checks every `intervalSeconds` (default one hour) whether the
    /// active key is due and rotates it. Runs until the task is cancelled (the server runs it as a
    /// service and cancels it on graceful shutdown). A failed check is logged and retried at the
    /// next interval; signing goes on with the old key meanwhile.
    public func runRotationScheduler(intervalSeconds: Double = 3600) async {
        while !Task.isCancelled {
            do {
                if let r = try await rotateIfDue() {
                    logger.notice("scheduled rotation done", metadata: ["cs.key_id": "\(r.newKey?.keyID ?? "")"])
                }
            } catch {
                logger.error("scheduled rotation failed", metadata: ["cs.reason": "\(String(reflecting: error))"])
            }
            try? await Task.sleep(nanoseconds: UInt64(intervalSeconds * 1e9))
        }
    }
}
