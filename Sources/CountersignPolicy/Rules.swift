/// How a finding affects the decision (wire enum `Enforcement`, numbered as in DESIGN.md).
public enum Enforcement: String, Sendable, Hashable, CaseIterable, Comparable {
    /// Veto that no human can lift through the API (`cannot_override`).
    case hard = "HARD"
    /// Veto that approvers of the rule's level can override (the intent check).
    case intent = "INTENT"
    /// Escalates until an authenticated person confirms (ticket, deletion, finance approval).
    case confirm = "CONFIRM"
    /// Escalates; approvers of the rule's level can override.
    case soft = "SOFT"
    /// A note; never changes the verdict.
    case advisory = "ADVISORY"

    /// The protobuf enum number (`ENFORCEMENT_HARD = 1` … `ENFORCEMENT_ADVISORY = 5`).
    public var wireNumber: Int {
        switch self {
        case .hard: 1
        case .intent: 2
        case .confirm: 3
        case .soft: 4
        case .advisory: 5
        }
    }

    /// Stricter sorts first: HARD < INTENT < CONFIRM < SOFT < ADVISORY.
    public static func < (a: Enforcement, b: Enforcement) -> Bool { a.wireNumber < b.wireNumber }
}

/// An approver level for overrides, L1 (lowest) to L4.
public enum ApprovalLevel: String, Sendable, Hashable, CaseIterable, Comparable {
    case l1 = "L1", l2 = "L2", l3 = "L3", l4 = "L4"
    public static func < (a: ApprovalLevel, b: ApprovalLevel) -> Bool { a.rawValue < b.rawValue }
}

/// A rule the engine knows: its stable id, enforcement and what it checks.
public struct RuleDescriptor: Sendable, Hashable {
    /// Stable id, the wire field `rule` (such as `public-database`).
    public var id: String
    /// How its findings are enforced.
    public var enforcement: Enforcement
    /// One line on what the rule checks.
    public var summary: String
    /// The default approval level that can override it (INTENT and SOFT rules only).
    public var defaultApproval: ApprovalLevel?

    /// Hard, intent and confirm rules cannot be switched off by a policy file.
    public var canBeDisabled: Bool { enforcement == .soft || enforcement == .advisory }
}

/// The catalogue of rules, in the order they are reported.
public enum RuleCatalog {
    public static let prodOpenIngress = "prod-open-ingress"
    public static let publicDatabase = "public-database"
    public static let encryptionAtRest = "encryption-at-rest"
    public static let auditInfrastructure = "audit-infrastructure"
    public static let pciBaseline = "pci-baseline"
    public static let gdprResidency = "gdpr-residency"
    public static let intentScope = "intent-scope"
    public static let intentAction = "intent-action"
    public static let prodChangeTicket = "prod-change-ticket"
    public static let deletionConfirmation = "deletion-confirmation"
    public static let costThreshold = "cost-threshold"
    public static let requiredTags = "required-tags"
    public static let encryptionExplicit = "encryption-explicit"
    public static let openIngress = "open-ingress"
    public static let reviewerVeto = "reviewer-veto"
    public static let reviewerEscalate = "reviewer-escalate"
    public static let reviewerUnavailable = "reviewer-unavailable"
    public static let onDemandCapacity = "on-demand-capacity"
    public static let plaintextSecret = "plaintext-secret"

    /// Every rule, strictest first.
    public static let all: [RuleDescriptor] = [
        .init(id: prodOpenIngress, enforcement: .hard,
              summary: "no ingress from 0.0.0.0/0 or ::/0 to production (security groups, their rules, NACLs)"),
        .init(id: publicDatabase, enforcement: .hard, summary: "no publicly accessible database"),
        .init(id: encryptionAtRest, enforcement: .hard,
              summary: "storage the plan shows as unencrypted (RDS, Aurora, Neptune, DocumentDB, EBS, S3 without SSE, …)"),
        .init(id: auditInfrastructure, enforcement: .hard,
              summary: "no change to CloudTrail, GuardDuty, AWS Config, log buckets and their policies, the ledger or Countersign itself"),
        .init(id: pciBaseline, enforcement: .hard,
              summary: "PCI-scoped resources need encryption, logging, a firewall and an isolated segment"),
        .init(id: gdprResidency, enforcement: .hard, summary: "GDPR-scoped or personal data only in allowed (EU) regions"),
        .init(id: intentScope, enforcement: .intent,
              summary: "the plan touches resources, environments or counts beyond the person's request", defaultApproval: .l2),
        .init(id: intentAction, enforcement: .intent,
              summary: "the plan destroys something the person did not ask to destroy", defaultApproval: .l2),
        .init(id: reviewerVeto, enforcement: .intent,
              summary: "the reviewer model judged the plan not to match the request", defaultApproval: .l2),
        .init(id: prodChangeTicket, enforcement: .confirm, summary: "a production change needs a change ticket"),
        .init(id: deletionConfirmation, enforcement: .confirm,
              summary: "each deleted or replaced address must be confirmed by name by an authenticated person"),
        .init(id: costThreshold, enforcement: .confirm,
              summary: "a monthly cost increase above the threshold needs finance approval"),
        .init(id: requiredTags, enforcement: .soft,
              summary: "resources that carry tags need the required tags", defaultApproval: .l1),
        .init(id: encryptionExplicit, enforcement: .soft,
              summary: "storage whose encryption is not set explicitly (unknown until apply, or left to the default)",
              defaultApproval: .l1),
        .init(id: openIngress, enforcement: .soft,
              summary: "ingress from 0.0.0.0/0 or ::/0 outside production", defaultApproval: .l2),
        .init(id: reviewerEscalate, enforcement: .soft,
              summary: "the reviewer model asked for a human to look", defaultApproval: .l1),
        .init(id: reviewerUnavailable, enforcement: .soft,
              summary: "the reviewer model did not answer in time", defaultApproval: .l1),
        .init(id: onDemandCapacity, enforcement: .advisory,
              summary: "instances on on-demand capacity: if long-running, reserved capacity or a savings plan is cheaper"),
        .init(id: plaintextSecret, enforcement: .advisory,
              summary: "a value that looks like a secret is in the plan in clear text (redacted here)"),
    ]

    static let byID: [String: RuleDescriptor] = Dictionary(uniqueKeysWithValues: all.map { ($0.id, $0) })

    /// The descriptor of a rule id, if the engine knows it.
    public static func descriptor(_ id: String) -> RuleDescriptor? { byID[id] }
}
