import struct Foundation.Data
import Crypto

/// The engine's answer (wire enum `Verdict`).
public enum Verdict: String, Sendable, Hashable, CaseIterable, Comparable {
    case approved = "APPROVED"
    case escalate = "ESCALATE"
    case veto = "VETO"

    /// The protobuf enum number (`VERDICT_APPROVED = 1`, `VERDICT_VETO = 2`, `VERDICT_ESCALATE = 3`).
    public var wireNumber: Int {
        switch self {
        case .approved: 1
        case .veto: 2
        case .escalate: 3
        }
    }

    /// Orders by strictness: APPROVED < ESCALATE < VETO.
    public static func < (a: Verdict, b: Verdict) -> Bool { a.strictness < b.strictness }
    var strictness: Int {
        switch self {
        case .approved: 0
        case .escalate: 1
        case .veto: 2
        }
    }

    /// The exit status of `countersign plan check`: 0 APPROVED, 2 ESCALATE, 3 VETO.
    public var exitCode: Int32 {
        switch self {
        case .approved: 0
        case .escalate: 2
        case .veto: 3
        }
    }
}

/// One thing the engine found. Every value in it is already redacted.
public struct Finding: Sendable, Hashable {
    /// Stable rule id (wire field `rule`), such as `public-database`.
    public var rule: String
    /// How it is enforced.
    public var enforcement: Enforcement
    /// The resource address (empty for a finding about the whole plan).
    public var address: String
    /// The attribute path, such as `ingress[0].cidr_blocks[0]` (empty when it is the resource).
    public var path: String
    /// What is wrong, in plain language.
    public var message: String
    /// The attribute's value before the change, redacted, as compact JSON (nil when none).
    public var before: String?
    /// The attribute's value after the change, redacted, as compact JSON (nil when none).
    public var after: String?
    /// What would satisfy the rule (a new plan without X, a confirmation, an approval).
    public var remedy: String
    /// The approvals that could override it: approver levels (`L2`) for INTENT and SOFT findings;
    /// empty for HARD (nothing can), CONFIRM (only the confirmation satisfies it) and ADVISORY.
    public var overridableBy: [String]

    public init(rule: String, enforcement: Enforcement, address: String, path: String, message: String,
                before: String? = nil, after: String? = nil, remedy: String, overridableBy: [String] = []) {
        self.rule = rule
        self.enforcement = enforcement
        self.address = address
        self.path = path
        self.message = message
        self.before = before
        self.after = after
        self.remedy = remedy
        self.overridableBy = overridableBy
    }
}

/// What authenticated humans have confirmed for a request.
///
/// - Important: The server fills this only from confirmations given by authenticated people of
///   the right role through the `Override` service (or signed consent); never from fields of the
///   orchestrator's own request.
public struct Confirmations: Sendable, Hashable {
    /// Addresses whose deletion or replacement the owner confirmed, each by its exact address.
    public var deletionConfirmed: Set<String>
    /// A finance approver approved the cost increase.
    public var financeApproved: Bool
    /// A security reviewer reviewed the plan (satisfies `open-ingress` and `encryption-explicit`).
    public var securityReviewed: Bool

    /// No confirmations.
    public static let none = Confirmations()

    public init(deletionConfirmed: Set<String> = [], financeApproved: Bool = false, securityReviewed: Bool = false) {
        self.deletionConfirmed = deletionConfirmed
        self.financeApproved = financeApproved
        self.securityReviewed = securityReviewed
    }
}

/// The inputs of one evaluation (the `VerifyPlan` fields the policy needs).
public struct EvaluationRequest: Sendable, Hashable {
    /// Client-chosen request id.
    public var requestID: String
    /// The person's words.
    public var userRequest: String
    /// The accountable human.
    public var owner: String
    /// The plan bytes exactly as received. Setting them computes their digest again.
    public var plan: [UInt8] {
        didSet { planSHA256 = sha256(plan) }
    }
    /// SHA-256 of ``plan``, computed once when the plan is set: the decision carries it as its
    /// plan digest, and the server's request fingerprint covers it rather than hashing the plan
    /// a second time.
    public private(set) var planSHA256: [UInt8]
    /// The plan's format.
    public var planFormat: PlanFormat
    /// The change ticket id, recorded as given (nil or empty when none).
    public var changeTicket: String?
    /// An optional Infracost `breakdown --format json` document.
    public var infracost: [UInt8]?

    public init(requestID: String, userRequest: String, owner: String, plan: [UInt8], planFormat: PlanFormat,
                changeTicket: String? = nil, infracost: [UInt8]? = nil) {
        self.requestID = requestID
        self.userRequest = userRequest
        self.owner = owner
        self.plan = plan
        self.planSHA256 = sha256(plan)
        self.planFormat = planFormat
        self.changeTicket = changeTicket
        self.infracost = infracost
    }
}

/// The engine's decision, ready to be put in a statement and signed.
public struct Decision: Sendable, Hashable {
    public var requestID: String
    public var verdict: Verdict
    /// True exactly when a HARD finding is present.
    public var cannotOverride: Bool
    /// Findings, strictest first, then by address, path and rule.
    public var findings: [Finding]
    /// A plain-language summary for the person and the on-call engineer.
    public var summary: String
    /// SHA-256 of the exact plan bytes.
    public var planSHA256: [UInt8]
    /// SHA-256 of the user request (UTF-8).
    public var userRequestSHA256: [UInt8]
    /// SHA-256 of the effective policy's canonical form (``Policy/sha256``).
    public var policySHA256: [UInt8]
    /// What the plan changes (address and action, no-ops and reads left out): the server records it
    /// in an approval so that an execution can be compared with exactly what was approved.
    /// Filled by ``PolicyEngine/evaluate(_:confirmations:)``.
    public var plannedChanges: [PlannedChange] = []

    /// The findings' rule ids, sorted and without repeats (the statement's `rules`).
    public var rules: [String] { Array(Set(findings.map(\.rule))).sorted() }

    /// The verdict the findings imply: a HARD or INTENT finding vetoes; otherwise a CONFIRM or
    /// SOFT finding escalates; otherwise approved.
    public static func verdict(for findings: [Finding]) -> Verdict {
        if findings.contains(where: { $0.enforcement == .hard || $0.enforcement == .intent }) { return .veto }
        if findings.contains(where: { $0.enforcement == .confirm || $0.enforcement == .soft }) { return .escalate }
        return .approved
    }

    /// This decision with a reviewer's opinion applied. A reviewer can only make it stricter:
    /// a VETO opinion adds an INTENT finding `reviewer-veto`, an ESCALATE opinion a SOFT finding
    /// `reviewer-escalate`, an APPROVED opinion changes nothing.
    public func applying(review: ReviewOpinion, policy: Policy = .defaults) -> Decision {
        let rule: String
        switch review.verdict {
        case .approved: return self
        case .veto: rule = RuleCatalog.reviewerVeto
        case .escalate: rule = RuleCatalog.reviewerEscalate
        }
        return adding(rule: rule, message: "The reviewer model: " + String(review.reason.prefix(500)),
                      remedy: "a new plan that matches the request, or an approver's override", policy: policy)
    }

    /// This decision when the reviewer failed or timed out: escalates (a SOFT finding
    /// `reviewer-unavailable`); never approves.
    public func applyingReviewerFailure(_ reason: String, policy: Policy = .defaults) -> Decision {
        adding(rule: RuleCatalog.reviewerUnavailable,
               message: "The reviewer model did not answer (\(String(reason.prefix(200)))); a person must look.",
               remedy: "a retry when the reviewer is back, or an approver's override", policy: policy)
    }

    private func adding(rule: String, message: String, remedy: String, policy: Policy) -> Decision {
        let d = RuleCatalog.descriptor(rule)!
        var out = self
        let level = policy.approvalLevels[rule] ?? d.defaultApproval ?? .l2
        out.findings.append(Finding(rule: rule, enforcement: d.enforcement, address: "", path: "", message: message,
                                    remedy: remedy, overridableBy: [level.rawValue]))
        out.findings.sort(by: Finding.order)
        let v = max(verdict, Decision.verdict(for: out.findings))
        if v != verdict {
            out.summary = "\(v.rawValue) after review: \(message) " + summary
        } else {
            out.summary = summary + " Reviewer: \(message)"
        }
        out.verdict = v
        out.cannotOverride = out.findings.contains { $0.enforcement == .hard }
        return out
    }
}

extension Finding {
    /// Sorted findings with each identical finding kept once, the first time it comes: what
    /// filtering through a set of the findings seen gives. Identical findings sort together (they
    /// agree on every key of ``order(_:_:)``), so each is only compared with the findings of its
    /// run of equal keys instead of hashing every finding.
    static func withoutRepeats(_ sorted: [Finding]) -> [Finding] {
        var out: [Finding] = []
        out.reserveCapacity(sorted.count)
        var runStart = 0
        for f in sorted {
            if let last = out.last, !order(last, f) && !order(f, last) {
                if out[runStart...].contains(f) { continue }
            } else {
                runStart = out.count
            }
            out.append(f)
        }
        return out
    }

    static func order(_ a: Finding, _ b: Finding) -> Bool {
        if a.enforcement != b.enforcement { return a.enforcement < b.enforcement }
        if a.rule != b.rule { return a.rule < b.rule }
        if a.address != b.address { return a.address < b.address }
        if a.path != b.path { return a.path < b.path }
        return a.message < b.message
    }
}

func sha256(_ bytes: [UInt8]) -> [UInt8] { Array(SHA256.hash(data: bytes)) }
