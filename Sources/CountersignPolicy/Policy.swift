import struct Foundation.Data
import Crypto
import Yams

/// The effective policy: thresholds, names and levels the rules use. Hard rules are code; this
/// only tunes them and can never switch them off.
///
/// Load one from YAML with ``Policy/load(yaml:)``; ``Policy/defaults`` is the built-in policy
/// (the same as `policy/default.yaml`). Every decision records ``sha256`` of the effective policy.
public struct Policy: Sendable, Hashable {
    /// Monthly cost increase (USD) above which finance approval is needed. Default 1000.
    public var costThresholdMonthlyUSD: Double
    /// Prefixes a change ticket must start with (such as `CHG-`); empty accepts any non-empty
    /// ticket. Default empty.
    public var changeTicketPrefixes: [String]
    /// Tags every resource that carries tags must have. Default Owner, Environment, CostCenter.
    public var requiredTags: [String]
    /// Tag keys that name the environment (compared case-insensitively). Default Environment, Env, Stage.
    public var environmentTagKeys: [String]
    /// Words that mean production, matched as whole words in tags, names, addresses and the
    /// request. Default prod, production.
    public var productionWords: [String]
    /// Name patterns (`*` wildcard, case-insensitive) of protected audit and Countersign
    /// resources. Default `*countersign*`, `*cloudtrail*`, `*audit-log*`, `*audit_log*`, `*guardduty*`.
    public var protectedNames: [String]
    /// Resource type patterns that are audit infrastructure. Default `aws_cloudtrail*`,
    /// `aws_guardduty_*`, `aws_config_*`, `aws_securityhub_*`.
    public var auditResourceTypes: [String]
    /// Region allow-lists per data scope (`gdpr`, `pci`), as patterns. Default gdpr: `eu-*`;
    /// no list for pci (any region).
    public var regionAllowLists: [String: [String]]
    /// Approval level that can override each INTENT and SOFT rule. Defaults from ``RuleCatalog``.
    public var approvalLevels: [String: ApprovalLevel]
    /// SOFT and ADVISORY rules switched off. Default none.
    public var disabledRules: Set<String>

    /// The built-in policy, with the defaults stated on each property.
    public static let defaults = Policy(
        costThresholdMonthlyUSD: 1000,
        changeTicketPrefixes: [],
        requiredTags: ["Owner", "Environment", "CostCenter"],
        environmentTagKeys: ["Environment", "Env", "Stage"],
        productionWords: ["prod", "production"],
        protectedNames: ["*countersign*", "*cloudtrail*", "*audit-log*", "*audit_log*", "*guardduty*"],
        auditResourceTypes: ["aws_cloudtrail*", "aws_guardduty_*", "aws_config_*", "aws_securityhub_*"],
        regionAllowLists: ["gdpr": ["eu-*"]],
        approvalLevels: Dictionary(uniqueKeysWithValues: RuleCatalog.all.compactMap { r in r.defaultApproval.map { (r.id, $0) } }),
        disabledRules: []
    )

    /// Starts from ``defaults`` and lets `configure` change it.
    public init(configure: (inout Policy) -> Void) {
        var p = Policy.defaults
        configure(&p)
        self = p
    }

    init(costThresholdMonthlyUSD: Double, changeTicketPrefixes: [String], requiredTags: [String],
         environmentTagKeys: [String], productionWords: [String], protectedNames: [String],
         auditResourceTypes: [String], regionAllowLists: [String: [String]],
         approvalLevels: [String: ApprovalLevel], disabledRules: Set<String>) {
        self.costThresholdMonthlyUSD = costThresholdMonthlyUSD
        self.changeTicketPrefixes = changeTicketPrefixes
        self.requiredTags = requiredTags
        self.environmentTagKeys = environmentTagKeys
        self.productionWords = productionWords
        self.protectedNames = protectedNames
        self.auditResourceTypes = auditResourceTypes
        self.regionAllowLists = regionAllowLists
        self.approvalLevels = approvalLevels
        self.disabledRules = disabledRules
    }

    /// True when `id` is switched on (hard, intent and confirm rules always are).
    public func isEnabled(_ id: String) -> Bool { !disabledRules.contains(id) }

    // MARK: Digest

    /// The canonical form of the effective policy: compact JSON (RFC 8259) with object keys sorted
    /// by their UTF-8 bytes, no whitespace, lists in the order given except `disabled_rules`
    /// (sorted), integers without a fraction, other numbers in Swift's shortest round-trip form,
    /// and a `schema` member `countersign-policy/1`. Two policy files that mean the same thing
    /// (comments, key order, defaults spelled out or not) have the same canonical form.
    public var canonicalJSON: String {
        func list(_ xs: [String]) -> JSONValue { .array(xs.map { .string($0) }) }
        let cost: JSONValue = costThresholdMonthlyUSD == costThresholdMonthlyUSD.rounded() && abs(costThresholdMonthlyUSD) < 1e15
            ? .int(Int64(costThresholdMonthlyUSD)) : .double(costThresholdMonthlyUSD)
        let value: JSONValue = .object([
            "schema": .string("countersign-policy/1"),
            "cost": .object(["threshold_monthly_usd": cost]),
            "change_ticket": .object(["prefixes": list(changeTicketPrefixes)]),
            "required_tags": list(requiredTags),
            "production": .object(["tag_keys": list(environmentTagKeys), "words": list(productionWords)]),
            "protected": .object(["names": list(protectedNames), "resource_types": list(auditResourceTypes)]),
            "regions": .object(JSONObject(regionAllowLists.mapValues(list))),
            "approvals": .object(JSONObject(approvalLevels.mapValues { .string($0.rawValue) })),
            "disabled_rules": list(disabledRules.sorted()),
        ])
        return value.compactText
    }

    /// SHA-256 of ``canonicalJSON`` (UTF-8): the `policy_sha256` of every decision.
    public var sha256: [UInt8] { Array(SHA256.hash(data: Data(canonicalJSON.utf8))) }

    /// ``sha256`` in lowercase hex.
    public var sha256Hex: String { hex(sha256) }

    // MARK: Loading

    /// Loads and validates a policy file. Keys left out keep their defaults.
    ///
    /// - Throws: `PolicyError` with code `.invalidPolicy` whose message names the key: unknown
    ///   keys, wrong types, duplicate keys, an unknown rule id, an attempt to switch off or set an
    ///   approval level for a hard, intent or confirm rule, a negative threshold.
    public static func load(yaml: String) throws -> Policy {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            let detail = String(describing: error).split(separator: "\n").first.map(String.init) ?? ""
            throw PolicyError.invalidPolicy("the policy file is not valid YAML: \(detail.prefix(300))", cause: String(describing: error))
        }
        var p = Policy.defaults
        guard let root else { return p }
        let top = try mapping(root, "the policy file")
        for (key, value) in top {
            switch key {
            case "version":
                guard let v = value.int, v == 1 else { throw PolicyError.invalidPolicy("version: must be 1") }
            case "cost":
                for (k, v) in try mapping(value, "cost") {
                    guard k == "threshold_monthly_usd" else { throw unknownKey("cost.\(k)") }
                    guard case .scalar(let s) = v, let d = Double(s.string), d.isFinite, d >= 0 else {
                        throw PolicyError.invalidPolicy("cost.threshold_monthly_usd: must be a number ≥ 0")
                    }
                    p.costThresholdMonthlyUSD = d
                }
            case "change_ticket":
                for (k, v) in try mapping(value, "change_ticket") {
                    guard k == "prefixes" else { throw unknownKey("change_ticket.\(k)") }
                    p.changeTicketPrefixes = try strings(v, "change_ticket.prefixes")
                }
            case "required_tags":
                p.requiredTags = try strings(value, "required_tags")
            case "production":
                for (k, v) in try mapping(value, "production") {
                    switch k {
                    case "tag_keys": p.environmentTagKeys = try strings(v, "production.tag_keys", nonEmpty: true)
                    case "words":
                        let words = try strings(v, "production.words", nonEmpty: true).map { $0.lowercased() }
                        for w in words where wordsOf(w) != [w] {
                            throw PolicyError.invalidPolicy("production.words: \"\(w)\" must be a single word of letters and digits")
                        }
                        p.productionWords = words
                    default: throw unknownKey("production.\(k)")
                    }
                }
            case "protected":
                for (k, v) in try mapping(value, "protected") {
                    switch k {
                    case "names": p.protectedNames = try strings(v, "protected.names")
                    case "resource_types": p.auditResourceTypes = try strings(v, "protected.resource_types")
                    default: throw unknownKey("protected.\(k)")
                    }
                }
            case "regions":
                var lists: [String: [String]] = [:]
                for (k, v) in try mapping(value, "regions") {
                    guard ["gdpr", "pci"].contains(k) else {
                        throw PolicyError.invalidPolicy("regions.\(k): unknown data scope (known: gdpr, pci)")
                    }
                    lists[k] = try strings(v, "regions.\(k)")
                }
                p.regionAllowLists = lists
            case "approvals":
                for (k, v) in try mapping(value, "approvals") {
                    guard let rule = RuleCatalog.descriptor(k) else {
                        throw PolicyError.invalidPolicy("approvals.\(k): unknown rule id")
                    }
                    guard rule.enforcement == .intent || rule.enforcement == .soft else {
                        throw PolicyError.invalidPolicy(
                            "approvals.\(k): \(rule.enforcement.rawValue) rules cannot be overridden by approval level")
                    }
                    guard case .scalar(let s) = v, let level = ApprovalLevel(rawValue: s.string.uppercased()) else {
                        throw PolicyError.invalidPolicy("approvals.\(k): must be one of L1, L2, L3, L4")
                    }
                    p.approvalLevels[k] = level
                }
            case "rules":
                for (k, v) in try mapping(value, "rules") {
                    guard let rule = RuleCatalog.descriptor(k) else {
                        throw PolicyError.invalidPolicy("rules.\(k): unknown rule id")
                    }
                    guard case .scalar(let s) = v, let on = Bool(s.string.lowercased()) ?? ["on": true, "off": false, "enabled": true, "disabled": false][s.string.lowercased()] else {
                        throw PolicyError.invalidPolicy("rules.\(k): must be true/false (or enabled/disabled)")
                    }
                    if !on {
                        guard rule.canBeDisabled else {
                            throw PolicyError.invalidPolicy(
                                "rules.\(k): a \(rule.enforcement.rawValue) rule cannot be switched off by a policy file")
                        }
                        p.disabledRules.insert(k)
                    } else {
                        p.disabledRules.remove(k)
                    }
                }
            default:
                throw unknownKey(key)
            }
        }
        return p
    }

    private static func unknownKey(_ key: String) -> PolicyError {
        PolicyError.invalidPolicy("\(key): unknown key")
    }

    private static func mapping(_ node: Node, _ what: String) throws -> [(String, Node)] {
        guard case .mapping(let m) = node else { throw PolicyError.invalidPolicy("\(what): must be a mapping") }
        var seen = Set<String>()
        var out: [(String, Node)] = []
        for (k, v) in m {
            guard case .scalar(let ks) = k else { throw PolicyError.invalidPolicy("\(what): keys must be plain strings") }
            let name = ks.string
            guard seen.insert(name).inserted else {
                throw PolicyError.invalidPolicy("\(what == "the policy file" ? name : "\(what).\(name)"): duplicate key")
            }
            out.append((name, v))
        }
        return out
    }

    private static func strings(_ node: Node, _ key: String, nonEmpty: Bool = false) throws -> [String] {
        guard case .sequence(let seq) = node else { throw PolicyError.invalidPolicy("\(key): must be a list of strings") }
        var out: [String] = []
        for item in seq {
            guard case .scalar(let s) = item, !s.string.isEmpty else {
                throw PolicyError.invalidPolicy("\(key): must be a list of non-empty strings")
            }
            out.append(s.string)
        }
        if nonEmpty && out.isEmpty { throw PolicyError.invalidPolicy("\(key): must not be empty") }
        return out
    }
}

func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(bytes.count * 2)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0x0F)])
    }
    return String(decoding: out, as: UTF8.self)
}

func lowerBytes(_ s: String) -> [UInt8] {
    var out = [UInt8]()
    out.reserveCapacity(s.utf8.count)
    for b in s.utf8 { out.append(b >= 0x41 && b <= 0x5A ? b + 0x20 : b) }
    return out
}

/// Case-insensitive (ASCII) glob with `*` only.
func globMatch(_ pattern: String, _ text: String) -> Bool {
    globMatchBytes(lowerBytes(pattern), lowerBytes(text))
}

/// A lower-cased glob pattern, ready to match many names.
struct GlobPattern: Sendable {
    let bytes: [UInt8]
    /// For `*text*` (one `*` at each end and none between): the text, found by a plain search.
    private let infix: [UInt8]?

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        let star = UInt8(ascii: "*")
        if bytes.count > 2, bytes.first == star, bytes.last == star, !bytes.dropFirst().dropLast().contains(star) {
            infix = Array(bytes.dropFirst().dropLast())
        } else {
            infix = nil
        }
    }

    /// `globMatchBytes(bytes, lowerBytes(text))`.
    func matchesLowering(_ text: String) -> Bool {
        guard let infix else { return globMatchLowering(bytes, text) }
        if let found = text.utf8.withContiguousStorageIfAvailable({ t -> Bool in
            guard infix.count <= t.count else { return false }
            let first = infix[0]
            for i in 0...(t.count - infix.count) {
                guard lowerASCII(t[i]) == first else { continue }
                var j = 1
                while j < infix.count && lowerASCII(t[i + j]) == infix[j] { j += 1 }
                if j == infix.count { return true }
            }
            return false
        }) {
            return found
        }
        return globMatchBytes(bytes, lowerBytes(text))
    }
}

@inline(__always)
func lowerASCII(_ b: UInt8) -> UInt8 { b >= 0x41 && b <= 0x5A ? b + 0x20 : b }

/// `globMatchBytes(p, lowerBytes(text))`, without making the lower-cased copy.
func globMatchLowering(_ p: [UInt8], _ text: String) -> Bool {
    if let result = text.utf8.withContiguousStorageIfAvailable({ globMatchBuffer(p, $0, lowering: true) }) { return result }
    return globMatchBytes(p, lowerBytes(text))
}

/// Glob on bytes already lower-cased.
func globMatchBytes(_ p: [UInt8], _ t: [UInt8]) -> Bool {
    t.withUnsafeBufferPointer { globMatchBuffer(p, $0, lowering: false) }
}

/// Glob with `*` only; `lowering` lower-cases ASCII letters of `t` as it reads them.
private func globMatchBuffer(_ p: [UInt8], _ t: UnsafeBufferPointer<UInt8>, lowering: Bool) -> Bool {
    func at(_ i: Int) -> UInt8 {
        let b = t[i]
        return lowering && b >= 0x41 && b <= 0x5A ? b + 0x20 : b
    }
    var pi = 0, ti = 0, star = -1, mark = 0
    while ti < t.count {
        if pi < p.count && p[pi] == UInt8(ascii: "*") {
            star = pi; mark = ti; pi += 1
        } else if pi < p.count && p[pi] == at(ti) {
            pi += 1; ti += 1
        } else if star >= 0 {
            pi = star + 1; mark += 1; ti = mark
        } else {
            return false
        }
    }
    while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
    return pi == p.count
}
