public import CountersignConfig
public import CountersignLedger
import CountersignPolicy
public import CountersignVerify
import CountersignWire
import Crypto
import Foundation
public import Logging
import Metrics
import NIOPosix

/// The decision path of `Audit`: VerifyPlan, GetDecision, GetCheckpoint and the proofs.
///
/// `VerifyPlan` runs in a fixed order: authenticate (the handshake) → authorise (role, and the
/// owners this orchestrator may act for) → evaluate the policy → build the statement → sign it in
/// the token → append it to the ledger (committed) → reply. A reply never leaves before its ledger
/// row has committed; anything that cannot be signed or ledgered is `UNAVAILABLE`, never approved.
///
/// Idempotency: the database holds at most one decision per request id (a unique index), so a
/// new request needs no lookup before it is decided. A replay is decided again, and its append
/// refused (``LedgerError/Code/exists``); so is any failure on the way: then the stored decision
/// is looked up and returned if the request is the same, byte for byte, and `ALREADY_EXISTS`
/// if it is not.
public struct DecisionService: Sendable {
    let policy: PolicySource
    let signer: any StatementSigner
    let ledger: Ledger
    let alerts: Alerter?
    let now: @Sendable () -> Int64
    let logger: Logger
    /// Most findings a decision lists (`limits.max_findings_listed`).
    let maxFindingsListed: Int
    /// Largest frame (`limits.max_frame_bytes`): no decision is signed whose reply would not fit.
    let maxFrameBytes: Int
    /// One decision at a time per request id, so that concurrent retries cannot decide twice.
    let gate = RequestGate()

    /// Longest request id accepted.
    static let maxRequestIDLength = 200
    /// Longest owner accepted (an e-mail address is at most 254 bytes).
    static let maxOwnerLength = 320
    /// Longest change ticket id accepted (the statement carries it as given).
    static let maxChangeTicketLength = 200
    /// Longest `user_request` accepted: a person's words, not a document.
    static let maxUserRequestBytes = 64 << 10

    /// - Parameters:
    ///   - alerts: where vetoes and deviations are reported (none: they are only logged).
    ///   - now: the clock, in Unix milliseconds (tests pass their own).
    ///   - limits: `max_findings_listed` and `max_frame_bytes` bound the size of a decision.
    public init(policy: PolicySource, signer: any StatementSigner, ledger: Ledger, alerts: Alerter? = nil,
                now: @escaping @Sendable () -> Int64 = DecisionService.systemClock,
                limits: LimitSettings = .defaults, logger: Logger) {
        self.policy = policy
        self.signer = signer
        self.ledger = ledger
        self.alerts = alerts
        self.now = now
        self.maxFindingsListed = limits.maxFindingsListed
        self.maxFrameBytes = limits.maxFrameBytes
        self.logger = logger
    }

    /// Unix milliseconds from the system clock.
    public static let systemClock: @Sendable () -> Int64 = { Int64(unixMilliseconds()) }

    /// Registers the methods, and ledgers every `PERMISSION_DENIED` refusal.
    public func register(into router: inout Router) {
        let service = self
        router.async(Method.verifyPlan, roles: [.orchestrator]) { (request: VerifyPlanRequest, context) in
            try await service.verifyPlan(request, context)
        }
        router.async(Method.verifyExecution, roles: [.orchestrator]) { (request: VerifyExecutionRequest, context) in
            try await service.verifyExecution(request, context)
        }
        router.async(Method.getDecision, roles: [.orchestrator, .auditor]) { (request: GetDecisionRequest, context) in
            try await service.getDecision(request, context)
        }
        router.async(Method.getCheckpoint) { (_: GetCheckpointRequest, _) in
            let c: StoredCheckpoint
            do {
                c = try await service.ledger.getCheckpoint()
            } catch let error as LedgerError where error.code == .notFound {
                c = try await service.ledger.checkpoint()  // none yet: make one now
            }
            var reply = Checkpoint()
            reply.checkpoint = c.body
            reply.treeSize = c.treeSize
            reply.rootHash = c.rootHash
            reply.signature = c.signature
            reply.keyID = c.keyID
            return reply
        }
        router.async(Method.proveInclusion) { (request: ProveInclusionRequest, _) in
            var reply = InclusionProof()
            reply.leafIndex = request.leafIndex
            reply.treeSize = request.treeSize
            reply.hashes = try await service.ledger.proveInclusion(index: request.leafIndex, treeSize: request.treeSize)
            return reply
        }
        router.async(Method.proveConsistency) { (request: ProveConsistencyRequest, _) in
            var reply = ConsistencyProof()
            reply.firstSize = request.firstSize
            reply.secondSize = request.secondSize
            reply.hashes = try await service.ledger.proveConsistency(first: request.firstSize, second: request.secondSize)
            return reply
        }
        router.onRefusal = { context, status in
            await service.ledgerRefusal(context: context, status: status, requestID: "", owner: "")
        }
    }

    // MARK: VerifyPlan

    func verifyPlan(_ request: VerifyPlanRequest, _ context: CallContext) async throws -> CountersignWire.Decision {
        guard !request.requestID.isEmpty, request.requestID.utf8.count <= Self.maxRequestIDLength else {
            throw Status(.invalidArgument, "request_id must be 1 to \(Self.maxRequestIDLength) bytes")
        }
        guard !request.owner.isEmpty, request.owner.utf8.count <= Self.maxOwnerLength else {
            throw Status(.invalidArgument, "owner (the accountable human) must be 1 to \(Self.maxOwnerLength) bytes")
        }
        guard !request.plan.isEmpty else { throw Status(.invalidArgument, "plan is empty") }
        guard request.changeTicket.utf8.count <= Self.maxChangeTicketLength else {
            throw Status(.invalidArgument, "change_ticket must be at most \(Self.maxChangeTicketLength) bytes")
        }
        guard request.userRequest.utf8.count <= Self.maxUserRequestBytes else {
            throw Status(.invalidArgument, "user_request must be at most \(Self.maxUserRequestBytes) bytes")
        }
        guard context.principal.mayActFor(request.owner) else {
            let status = Status(.permissionDenied, "orchestrator '\(context.principal.id)' may not act for '\(request.owner)'")
            await ledgerRefusal(context: context, status: status, requestID: request.requestID, owner: request.owner)
            throw status
        }
        let started = ContinuousClock.now
        let format = try PlanFormat(wireName: request.planFormat)
        // The plan is hashed once, here: the evaluation's digest is the statement's plan_sha256
        // and part of the request's fingerprint.
        let evaluation = EvaluationRequest(
            requestID: request.requestID, userRequest: request.userRequest, owner: request.owner, plan: request.plan,
            planFormat: format, changeTicket: request.changeTicket.isEmpty ? nil : request.changeTicket,
            infracost: request.infracost.isEmpty ? nil : request.infracost)
        let fingerprint = Self.fingerprint(request, planSHA256: evaluation.planSHA256)
        // Its append is on its way: the ledger's writer may wait for it to share a commit.
        let expected = ledger.expectAppend()
        defer { expected.withdraw() }

        return try await gate.exclusive(request.requestID) {
            do {
                return try await decide(request, evaluation, fingerprint: fingerprint, started: started, expected: expected, context)
            } catch {
                // A replay (the ledger refused a second decision), or a failure of the token or
                // the policy: if this request was decided before, the stored decision is the
                // answer; if another request was decided under this id, it is refused; else the
                // failure stands. When the ledger itself failed, it cannot answer a lookup either.
                let replay = (error as? LedgerError)?.code == .exists
                if error is LedgerError && !replay { throw error }
                let stored: StoredEntry?
                do {
                    stored = try await ledger.latest(kind: .decision, requestID: request.requestID)
                } catch let lookup {
                    throw replay ? lookup : error
                }
                guard let stored else {
                    if replay {
                        throw Status(.unavailable, "the ledger refused request_id '\(request.requestID)' as decided, but holds no decision for it")
                    }
                    throw error
                }
                guard stored.fingerprint == fingerprint || stored.fingerprint == Self.fingerprintBeforeDigest(request) else {
                    throw Status(.alreadyExists, "request_id '\(request.requestID)' was decided for a different request; use a new request_id")
                }
                return try Self.reply(from: stored)
            }
        }
    }

    /// Plans and execution reports larger than this are read on NIO's blocking-work thread pool
    /// instead of Swift's executor (a plan of 256 KiB takes a few milliseconds of evaluation).
    static let offloadedInputBytes = 256 << 10

    /// `work`, the policy core's reading of `bytes` of a client's input. A large plan keeps a
    /// thread busy for tens of milliseconds (a 4 MiB plan about 60 ms), and Swift's executor has
    /// one thread per core, which it serves in order: with a few dozen large plans queued on it,
    /// everything else that runs there waited behind them, the renewal of the ledger lease too,
    /// which then expired (measured: renewals 4–7 s late, the lease lost for about 7 s, under
    /// 3.7 GB of 3.7 MB plans in 10 s). Large inputs therefore go to the thread pool, where the
    /// kernel shares the cores between its threads and the executor's, and small ones stay where
    /// they are, without a thread hop.
    static func policyWork<T: Sendable>(on bytes: Int, _ work: @escaping @Sendable () throws -> T) async throws -> T {
        guard bytes > offloadedInputBytes else { return try work() }
        return try await NIOThreadPool.singleton.runIfActive(work)
    }

    /// Evaluates, signs and ledgers a new decision.
    private func decide(_ request: VerifyPlanRequest, _ evaluationRequest: EvaluationRequest, fingerprint: [UInt8],
                        started: ContinuousClock.Instant, expected: ExpectedAppend, _ context: CallContext) async throws -> CountersignWire.Decision {
        let policyStarted = ContinuousClock.now
        let engine = try policy.engine()
        let evaluation = try await Self.policyWork(on: evaluationRequest.plan.count) { try engine.evaluate(evaluationRequest) }

        DecisionMetrics.policy.record(duration: ContinuousClock.now - policyStarted)
        var statement = DecisionStatement()
        statement.requestID = request.requestID
        statement.planSHA256 = evaluation.planSHA256
        statement.userRequestSHA256 = evaluation.userRequestSHA256
        statement.policySHA256 = evaluation.policySHA256
        statement.verdict = CountersignWire.Verdict(policy: evaluation.verdict)
        statement.agent = context.principal.id
        statement.owner = request.owner
        statement.keyID = try await signer.activeKeyID
        statement.decidedAtUnixMs = now()
        statement.cannotOverride = evaluation.cannotOverride
        statement.changeTicket = request.changeTicket
        statement.planFormat = evaluationRequest.planFormat.rawValue
        let listing = FindingsListing(evaluation.findings, limit: maxFindingsListed)
        statement.findings = listing.listed.map(CountersignWire.Finding.init(policy:))
        statement.rules = listing.listed.map(\.rule)
        statement.findingsOmitted = UInt32(listing.omitted)
        statement.omittedRules = listing.omittedRules
        statement.summary = evaluation.summary + listing.summaryNote
        statement.planned = evaluation.plannedChanges.map { CountersignWire.PlannedChange(address: $0.address, action: $0.action) }
        let payload = statement.protobufBytes()
        // The reply carries the statement and, at most, its findings and summary again: only a
        // statement near half the frame needs its reply measured.
        if 2 * payload.count + Self.replyRoom > maxFrameBytes, let replyBytes = Self.replyBytesAboveFrame(
            Self.reply(statement: statement, signed: SignedStatement(payloadType: PayloadType.decision, payload: payload,
                                                                     signature: [], keyID: statement.keyID), index: 0),
            maxFrameBytes: maxFrameBytes) {
            // A decision nobody could receive would be signed and ledgered for nothing, and every
            // retry would be answered with it again; refuse it before signing, and say why.
            let status = Status(.resourceExhausted, "the decision for this plan would be a reply of \(replyBytes) bytes, "
                + "above limits.max_frame_bytes (\(maxFrameBytes)): it lists \(evaluation.plannedChanges.count) planned changes "
                + "and \(listing.listed.count) findings; split the plan into smaller ones")
            await ledgerRefusal(context: context, status: status, requestID: request.requestID, owner: request.owner)
            throw status
        }

        let signStarted = ContinuousClock.now
        let signed = try await signer.sign(payloadType: PayloadType.decision, payload: payload)
        guard signed.keyID == statement.keyID else {
            // A rotation landed between reading the active key and signing: the statement would
            // name another key than the one that signed it. Nothing is ledgered; the caller retries.
            throw Status(.unavailable, "the signing key rotated during the decision; retry")
        }
        let appendStarted = ContinuousClock.now
        DecisionMetrics.sign.record(duration: appendStarted - signStarted)
        let index = try await ledger.append(LedgerEntry(
            kind: .decision, statement: signed, agent: context.principal.id, owner: request.owner,
            requestID: request.requestID, fingerprint: fingerprint), expected: expected)
        let done = ContinuousClock.now
        DecisionMetrics.append.record(duration: done - appendStarted)
        DecisionMetrics.decision.record(duration: done - started)
        DecisionMetrics.verdicts[statement.verdict.rawValue, default: DecisionMetrics.other].increment()
        context.logger.info("decided", metadata: [
            "cs.request_id": "\(request.requestID)", "cs.verdict": "\(statement.verdict)", "cs.ledger_index": "\(index)",
            "cs.owner": "\(request.owner)",
        ])
        if statement.verdict == .veto {
            alerts?.post(Alert(.veto, "VETO of \(request.requestID) for \(request.owner) from \(context.principal.id): \(evaluation.summary)",
                               details: ["request_id": request.requestID, "owner": request.owner, "agent": context.principal.id,
                                         "rules": statement.rules.joined(separator: ","), "ledger_index": "\(index)"]))
        }
        return Self.reply(statement: statement, signed: signed, index: index)
    }

    // MARK: VerifyExecution

    /// Compares what was applied with the approved plan, and signs and ledgers the outcome: MATCH,
    /// or DEVIATION (extra, missing or different changes, or a plan that was never approved).
    func verifyExecution(_ request: VerifyExecutionRequest, _ context: CallContext) async throws -> ExecutionResult {
        guard !request.requestID.isEmpty, request.requestID.utf8.count <= Self.maxRequestIDLength else {
            throw Status(.invalidArgument, "request_id must be 1 to \(Self.maxRequestIDLength) bytes")
        }
        let format = try ExecutionFormat(wireName: request.executionFormat)
        let report = request.execution
        let executed = try await Self.policyWork(on: report.count) { try ExecutionCheck.parse(report, format: format) }
        let stored = try await ledger.latest(kind: .decision, requestID: request.requestID)
        var deviations: [ExecutionDeviation]
        var owner = ""
        var decisionDigest: [UInt8] = []
        if let stored {
            owner = stored.owner
            guard context.principal.mayActFor(owner) else {
                let status = Status(.permissionDenied, "orchestrator '\(context.principal.id)' may not report for '\(owner)'")
                await ledgerRefusal(context: context, status: status, requestID: request.requestID, owner: owner)
                throw status
            }
            let approved = try DecisionStatement(protobuf: stored.statement.payload)
            decisionDigest = Array(SHA256.hash(data: stored.statement.payload))
            if approved.verdict == .approved {
                deviations = ExecutionCheck.compare(
                    planned: approved.planned.map { CountersignPolicy.PlannedChange(address: $0.address, action: $0.action) },
                    executed: executed)
            } else {
                deviations = [ExecutionDeviation(address: "", expected: "", actual: "",
                                                 message: "the decision on \(request.requestID) is \(approved.verdict), not APPROVED: nothing may be executed")]
            }
        } else {
            deviations = [ExecutionDeviation(address: "", expected: "", actual: "",
                                             message: "no decision exists for \(request.requestID): this execution was never approved")]
        }
        var statement = ExecutionStatement()
        statement.requestID = request.requestID
        statement.executionSHA256 = Array(SHA256.hash(data: request.execution))
        statement.decisionStatementSHA256 = decisionDigest
        statement.verdict = deviations.isEmpty ? .match : .deviation
        statement.agent = context.principal.id
        statement.owner = owner
        statement.keyID = try await signer.activeKeyID
        statement.decidedAtUnixMs = now()
        // The verdict lists at most `max_findings_listed` deviations, and none when even those would
        // not fit in a frame (a report's addresses can be long). Either way it is signed, ledgered
        // and alerted: a deviation is never dropped for its size.
        func listing(_ listed: ArraySlice<ExecutionDeviation>) -> ExecutionResult {
            var listedStatement = statement
            listedStatement.deviations = listed.map { $0.address.isEmpty ? $0.message : $0.address }
            listedStatement.deviationsOmitted = UInt32(deviations.count - listed.count)
            var reply = ExecutionResult()
            reply.requestID = request.requestID
            reply.verdict = statement.verdict
            reply.deviations = listed.map {
                var d = Deviation()
                d.address = $0.address
                d.expectedAction = $0.expected
                d.actualAction = $0.actual
                d.message = $0.message
                return d
            }
            reply.deviationsOmitted = listedStatement.deviationsOmitted
            reply.statement = listedStatement.protobufBytes()
            return reply
        }
        var reply = listing(deviations.prefix(maxFindingsListed))
        if Self.replyBytesAboveFrame(reply, maxFrameBytes: maxFrameBytes) != nil {
            reply = listing([])
        }
        let signed = try await signer.sign(payloadType: PayloadType.execution, payload: reply.statement)
        let index = try await ledger.append(LedgerEntry(kind: .execution, statement: signed, agent: context.principal.id,
                                                        owner: owner, requestID: request.requestID))
        if !deviations.isEmpty {
            context.logger.warning("execution deviates from the approval", metadata: [
                "cs.request_id": "\(request.requestID)", "cs.deviations": "\(deviations.count)", "cs.ledger_index": "\(index)",
            ])
            let first = deviations.prefix(3).map { String($0.message.prefix(300)) }
            alerts?.post(Alert(.deviation, "DEVIATION in the execution of \(request.requestID) reported by \(context.principal.id): "
                                   + first.joined(separator: "; ") + (deviations.count > 3 ? " (and \(deviations.count - 3) more)" : ""),
                               details: ["request_id": request.requestID, "owner": owner, "agent": context.principal.id,
                                         "deviations": "\(deviations.count)", "ledger_index": "\(index)"]))
        }
        reply.signature = signed.signature
        reply.keyID = signed.keyID
        reply.ledgerIndex = index
        reply.payloadType = signed.payloadType
        return reply
    }

    // MARK: GetDecision

    func getDecision(_ request: GetDecisionRequest, _ context: CallContext) async throws -> CountersignWire.Decision {
        guard !request.requestID.isEmpty, request.requestID.utf8.count <= Self.maxRequestIDLength else {
            throw Status(.invalidArgument, "request_id must be 1 to \(Self.maxRequestIDLength) bytes")
        }
        guard let stored = try await ledger.latest(kind: .decision, requestID: request.requestID) else {
            throw Status(.notFound, "no decision for request_id '\(request.requestID)'")
        }
        if context.principal.role == .orchestrator, !context.principal.mayActFor(stored.owner) {
            throw Status(.permissionDenied, "orchestrator '\(context.principal.id)' may not read decisions for '\(stored.owner)'")
        }
        return try Self.reply(from: stored)
    }

    // MARK: refusals

    /// Ledgers a refused attempt: who tried what, and why. Best effort: a refusal that cannot be
    /// ledgered is logged, and the caller is refused all the same.
    func ledgerRefusal(context: CallContext, status: Status, requestID: String, owner: String) async {
        var refusal = RefusalStatement()
        refusal.method = context.method
        refusal.principal = context.principal.id
        refusal.code = status.code.rawValue
        refusal.reason = status.message
        refusal.requestID = requestID
        refusal.owner = owner
        refusal.atUnixMs = now()
        do {
            refusal.keyID = try await signer.activeKeyID
            let signed = try await signer.sign(payloadType: PayloadType.refusal, payload: refusal.protobufBytes())
            _ = try await ledger.append(LedgerEntry(kind: .refusal, statement: signed, agent: context.principal.id,
                                                    owner: owner, requestID: requestID.isEmpty ? nil : requestID))
        } catch {
            context.logger.error("could not ledger a refusal", metadata: ["cs.error": "\(String(reflecting: error))"])
        }
    }

    // MARK: helpers

    /// What makes a request what it is, stored with its decision: a replay must match it. SHA-256
    /// over a version tag and every field of the request, each length-prefixed, the plan by its
    /// SHA-256 (`planSHA256`, which the caller has computed for the decision already).
    static func fingerprint(_ r: VerifyPlanRequest, planSHA256: [UInt8]) -> [UInt8] {
        precondition(planSHA256.count == 32, "planSHA256 is a SHA-256 digest")
        return lengthPrefixedSHA256([Array(fingerprintTag.utf8), Array(r.requestID.utf8), Array(r.userRequest.utf8),
                                     Array(r.owner.utf8), planSHA256, Array(r.planFormat.utf8), Array(r.changeTicket.utf8),
                                     Array(r.registeredRequestID.utf8), r.infracost])
    }

    /// Sets ``fingerprint(_:planSHA256:)`` apart from the fingerprint of decisions made before it.
    static let fingerprintTag = "countersign.request-fingerprint.v2"

    /// The fingerprint of decisions ledgered before ``fingerprint(_:planSHA256:)``: the same
    /// fields without the tag, the plan's bytes themselves. A replay of such a decision is
    /// compared with it once the current fingerprint does not match.
    static func fingerprintBeforeDigest(_ r: VerifyPlanRequest) -> [UInt8] {
        lengthPrefixedSHA256([Array(r.requestID.utf8), Array(r.userRequest.utf8), Array(r.owner.utf8), r.plan,
                              Array(r.planFormat.utf8), Array(r.changeTicket.utf8), Array(r.registeredRequestID.utf8), r.infracost])
    }

    private static func lengthPrefixedSHA256(_ fields: [[UInt8]]) -> [UInt8] {
        var hasher = SHA256()
        for field in fields {
            withUnsafeBytes(of: UInt64(field.count).bigEndian) { hasher.update(bufferPointer: $0) }
            field.withUnsafeBytes { hasher.update(bufferPointer: $0) }
        }
        return Array(hasher.finalize())
    }

    static func reply(from stored: StoredEntry) throws -> CountersignWire.Decision {
        let statement: DecisionStatement
        do {
            statement = try DecisionStatement(protobuf: stored.statement.payload)
        } catch {
            throw Status(.dataLoss, "the stored decision at index \(stored.index) does not decode: run `countersign ledger verify`")
        }
        return reply(statement: statement, signed: stored.statement, index: stored.index)
    }

    /// The size of `reply`, unsigned, with room for what signing adds, when that is above
    /// `maxFrameBytes`; nil when it fits.
    static func replyBytesAboveFrame(_ reply: some ProtoMessage, maxFrameBytes: Int) -> Int? {
        let bytes = reply.protobufBytes().count + replyRoom
        return bytes > maxFrameBytes ? bytes : nil
    }

    /// Room in a reply for what is added after signing: the signature (RSA-4096: 512 bytes), key
    /// id, ledger index, payload type, and the envelope around it.
    static let replyRoom = 2048

    static func reply(statement: DecisionStatement, signed: SignedStatement, index: UInt64) -> CountersignWire.Decision {
        var reply = CountersignWire.Decision()
        reply.requestID = statement.requestID
        reply.verdict = statement.verdict
        reply.findings = statement.findings
        reply.findingsOmitted = statement.findingsOmitted
        reply.summary = statement.summary
        reply.cannotOverride = statement.cannotOverride
        reply.statement = signed.payload
        reply.signature = signed.signature
        reply.keyID = signed.keyID
        reply.ledgerIndex = index
        reply.payloadType = signed.payloadType
        return reply
    }
}

/// The findings a decision lists: at most `limit`, the strictest first (the engine's order), so
/// that a plan with thousands of findings still gets a decision that fits in a frame. The verdict
/// and `cannot_override` are the engine's, over every finding; the statement names the rules of
/// the findings it leaves out, and its summary says how to see them all.
struct FindingsListing {
    let listed: ArraySlice<CountersignPolicy.Finding>
    let omitted: Int
    /// The distinct rule ids of the findings left out, sorted.
    let omittedRules: [String]
    /// A sentence for the summary when findings are left out; empty otherwise.
    let summaryNote: String

    init(_ findings: [CountersignPolicy.Finding], limit: Int) {
        listed = findings.prefix(limit)
        let rest = findings.dropFirst(limit)
        omitted = rest.count
        omittedRules = Set(rest.map(\.rule)).sorted()
        summaryNote = rest.isEmpty ? "" : " Only the first \(listed.count) of \(findings.count) findings are listed "
            + "(limits.max_findings_listed); the rest are of the rules \(omittedRules.joined(separator: ", ")). "
            + "`countersign plan check` on the plan lists all of them."
    }
}

/// Runs work for one request id at a time; work for different ids runs concurrently. A lock, not
/// an actor: the common case (nobody else on this id) takes the lock twice and never suspends.
final class RequestGate: @unchecked Sendable {
    private let lock = NSLock()
    /// Ids being worked on, each with the callers waiting for it, in arrival order.
    private var busy: [String: [CheckedContinuation<Void, Never>]] = [:]

    func exclusive<T: Sendable>(_ id: String, _ body: () async throws -> T) async throws -> T {
        if !tryEnter(id) {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                lock.lock()
                if busy[id] == nil {
                    busy[id] = []  // released meanwhile: ours now
                    lock.unlock()
                    c.resume()
                } else {
                    busy[id]!.append(c)  // resumed by release(_:) with the id handed over
                    lock.unlock()
                }
            }
        }
        defer { release(id) }
        return try await body()
    }

    private func tryEnter(_ id: String) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard busy[id] == nil else { return false }
        busy[id] = []
        return true
    }

    private func release(_ id: String) {
        lock.lock()
        guard var waiters = busy[id], !waiters.isEmpty else {
            busy[id] = nil
            lock.unlock()
            return
        }
        let next = waiters.removeFirst()
        busy[id] = waiters
        lock.unlock()
        next.resume()
    }
}

/// The decision path's metrics (labels of bounded cardinality: by verdict only).
enum DecisionMetrics {
    static let decision = Metrics.Timer(label: "countersign_decision_duration_seconds", preferredDisplayUnit: .seconds)
    static let policy = Metrics.Timer(label: "countersign_policy_duration_seconds", preferredDisplayUnit: .seconds)
    static let sign = Metrics.Timer(label: "countersign_sign_duration_seconds", preferredDisplayUnit: .seconds)
    static let append = Metrics.Timer(label: "countersign_append_duration_seconds", preferredDisplayUnit: .seconds)
    static let verdicts: [Int32: Counter] = Dictionary(uniqueKeysWithValues: [
        CountersignWire.Verdict.approved, .veto, .escalate,
    ].map { ($0.rawValue, Counter(label: "countersign_decisions_total", dimensions: [("verdict", "\($0)")])) })
    static let other = Counter(label: "countersign_decisions_total", dimensions: [("verdict", "UNSPECIFIED")])
}

private func unixMilliseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
}

extension CountersignWire.Verdict {
    init(policy: CountersignPolicy.Verdict) {
        switch policy {
        case .approved: self = .approved
        case .veto: self = .veto
        case .escalate: self = .escalate
        }
    }
}

extension CountersignWire.Finding {
    init(policy f: CountersignPolicy.Finding) {
        self.init(rule: f.rule, enforcement: Enforcement(policy: f.enforcement), address: f.address, path: f.path,
                  message: f.message, before: f.before ?? "", after: f.after ?? "", remedy: f.remedy,
                  overridableBy: f.overridableBy)
    }
}

extension CountersignWire.Enforcement {
    init(policy e: CountersignPolicy.Enforcement) {
        switch e {
        case .hard: self = .hard
        case .intent: self = .intent
        case .confirm: self = .confirm
        case .soft: self = .soft
        case .advisory: self = .advisory
        }
    }
}
