/// The policy engine: pure, deterministic, no I/O. Safe to share between tasks.
///
/// ```swift
/// let engine = PolicyEngine(policy: try Policy.load(yaml: text))
/// let decision = try engine.evaluate(request, confirmations: confirmedByHumans)
/// ```
public struct PolicyEngine: Sendable {
    /// The effective policy.
    public let policy: Policy
    /// Limits on untrusted input.
    public let limits: PlanLimits
    /// ``Policy/sha256`` of `policy`, computed once.
    public let policySHA256: [UInt8]
    /// The policy's tables in the forms evaluation reads, built once.
    let classifier: Classifier

    /// - Parameters:
    ///   - policy: the effective policy (default ``Policy/defaults``).
    ///   - limits: input limits (default ``PlanLimits/defaults``).
    public init(policy: Policy = .defaults, limits: PlanLimits = .defaults) {
        self.policy = policy
        self.limits = limits
        self.policySHA256 = policy.sha256
        self.classifier = Classifier(policy: policy)
    }

    /// Evaluates a plan against the person's request and the policy.
    ///
    /// - Parameters:
    ///   - request: the request's fields (plan bytes, words, owner, ticket, optional Infracost).
    ///   - confirmations: what authenticated humans confirmed (never the orchestrator's flags).
    /// - Returns: the decision: verdict, `cannotOverride`, findings, summary and digests.
    /// - Throws: `PolicyError` when the plan or the Infracost document cannot be read.
    public func evaluate(_ request: EvaluationRequest, confirmations: Confirmations = .none) throws -> Decision {
        let plan = try Plan.parse(request.plan, format: request.planFormat, limits: limits)
        var cost = plan.costIncreaseMonthly
        if let bytes = request.infracost, let infra = try Infracost.monthlyCostIncrease(bytes, limits: limits) {
            cost = max(cost ?? infra, infra)
        }
        var d = evaluate(plan: plan, userRequest: request.userRequest, changeTicket: request.changeTicket,
                         costIncreaseMonthly: cost, confirmations: confirmations)
        d.requestID = request.requestID
        d.plannedChanges = PlannedChange.of(plan)
        d.planSHA256 = request.planSHA256
        return d
    }

    /// Evaluates an already parsed plan. `requestID` and the plan digest are left empty.
    public func evaluate(plan: Plan, userRequest: String, changeTicket: String?, costIncreaseMonthly: Double?,
                         confirmations: Confirmations) -> Decision {
        var ctx = Evaluation(policy: policy, classifier: classifier, plan: plan, userRequest: userRequest,
                             changeTicket: changeTicket, cost: costIncreaseMonthly, confirmations: confirmations)
        ctx.run()
        var findings = ctx.findings.filter { policy.isEnabled($0.rule) }
        findings.sort(by: Finding.order)
        findings = Finding.withoutRepeats(findings)
        let verdict = Decision.verdict(for: findings)
        let cannotOverride = findings.contains { $0.enforcement == .hard }
        let summary = Summary.write(verdict: verdict, cannotOverride: cannotOverride, findings: findings,
                                    plan: plan, cost: costIncreaseMonthly, policy: policy)
        return Decision(requestID: "", verdict: verdict, cannotOverride: cannotOverride, findings: findings,
                        summary: summary, planSHA256: [], userRequestSHA256: sha256(Array(userRequest.utf8)),
                        policySHA256: policySHA256)
    }
}

/// One evaluation's working state.
struct Evaluation {
    let policy: Policy
    let plan: Plan
    let classifier: Classifier
    let intent: RequestIntent
    let changeTicket: String?
    let cost: Double?
    let confirmations: Confirmations
    var findings: [Finding] = []
    var auditTypeCache: [String: Bool] = [:]

    /// Plan-only environment of each change, and whether it counts as production.
    var env: [EnvironmentClass] = []
    var isProd: [Bool] = []

    init(policy: Policy, classifier: Classifier, plan: Plan, userRequest: String, changeTicket: String?,
         cost: Double?, confirmations: Confirmations) {
        self.policy = policy
        self.plan = plan
        self.classifier = classifier
        self.intent = RequestIntent(userRequest, classifier: classifier)
        self.changeTicket = changeTicket
        self.cost = cost
        self.confirmations = confirmations
    }

    mutating func add(_ rule: String, _ c: ResourceChange?, path: [PathStep] = [], _ message: String,
                      remedy: String, showValue: Bool = true) {
        let d = RuleCatalog.descriptor(rule)!
        var overridable: [String] = []
        if d.enforcement == .intent || d.enforcement == .soft {
            overridable = [(policy.approvalLevels[rule] ?? d.defaultApproval ?? .l2).rawValue]
        }
        var before: String?
        var after: String?
        if let c, showValue, !path.isEmpty {
            before = Redactor.render(c.before, at: path, sensitive: c.beforeSensitive)
            after = ResourceChange.isMarked(c.afterUnknown, path) ? "(known after apply)"
                : Redactor.render(c.after, at: path, sensitive: c.afterSensitive)
        }
        findings.append(Finding(rule: rule, enforcement: d.enforcement, address: c?.address ?? "",
                                path: renderPath(path), message: message, before: before, after: after,
                                remedy: remedy, overridableBy: overridable))
    }

    mutating func run() {
        var scopeList: [Set<DataScope>] = []
        env.reserveCapacity(plan.changes.count)
        scopeList.reserveCapacity(plan.changes.count)
        for i in plan.changes.indices {
            let (e, s) = classifier.classify(plan.changes[i])
            env.append(e)
            scopeList.append(s)
        }
        isProd = env.map { $0 == .production || intent.mentionsProduction }
        let logBuckets = logBucketNames()
        let sseCovered = sseCoveredBuckets()
        for i in plan.changes.indices where plan.changes[i].isChange {
            let c = plan.changes[i]
            let scopes = scopeList[i]
            checkIngress(c, prod: isProd[i], pci: scopes.contains(.pci))
            checkPublicDatabase(c)
            checkEncryption(c, pci: scopes.contains(.pci), sseCovered: sseCovered)
            checkAudit(c, logBuckets: logBuckets)
            checkPCI(c, pci: scopes.contains(.pci))
            checkResidency(c, scopes: scopes)
            checkDeletion(c)
            checkTags(c)
            checkAdvisories(c)
        }
        checkTicket()
        checkCost()
        checkIntent()
    }

    // MARK: Network

    static func isOpenCIDR(_ s: String) -> Bool {
        let t = s.trimmingSpaces.lowercased()
        return t == "0.0.0.0/0" || t == "::/0" || t == "::0/0" || t == "0::/0" || t == "0.0.0.0" || t == "*"
            || t == "any" || t == "internet" || t == "0.0.0.0/0.0.0.0"
    }

    /// Paths of open ingress CIDRs after the change.
    func openIngressPaths(_ c: ResourceChange) -> [[PathStep]] {
        guard c.hasAfter, let after = c.after else { return [] }
        var out: [[PathStep]] = []
        func cidrs(_ base: [PathStep], _ keys: [String]) {
            for key in keys {
                switch after[base, key] {
                case .string(let s)? where Evaluation.isOpenCIDR(s): out.append(base + [.key(key)])
                case .array(let a)?:
                    for (j, v) in a.enumerated() {
                        if let s = v.string, Evaluation.isOpenCIDR(s) { out.append(base + [.key(key), .index(j)]) }
                    }
                default: break
                }
            }
        }
        func blocks(_ key: String, allowOnly: Bool) -> [[PathStep]] {
            guard case .array(let a)? = after[key] else { return [] }
            return a.indices.compactMap { j in
                if allowOnly, let action = a[j]["action"]?.string ?? a[j]["rule_action"]?.string,
                   action.lowercased() != "allow" { return nil }
                return [.key(key), .index(j)]
            }
        }
        switch c.type {
        case "aws_security_group", "aws_default_security_group":
            for base in blocks("ingress", allowOnly: false) { cidrs(base, ["cidr_blocks", "ipv6_cidr_blocks"]) }
        case "aws_security_group_rule":
            if after["type"]?.string == "ingress" { cidrs([], ["cidr_blocks", "ipv6_cidr_blocks"]) }
        case "aws_vpc_security_group_ingress_rule":
            cidrs([], ["cidr_ipv4", "cidr_ipv6"])
        case "aws_network_acl_rule":
            if after["egress"]?.bool != true, (after["rule_action"]?.string ?? "").lowercased() == "allow" {
                cidrs([], ["cidr_block", "ipv6_cidr_block"])
            }
        case "aws_network_acl", "aws_default_network_acl":
            for base in blocks("ingress", allowOnly: true) { cidrs(base, ["cidr_block", "ipv6_cidr_block"]) }
        default:
            if c.provider == "changeset" {
                let action = wordsOf(after["action"]?.string ?? "")
                let direction = (after["direction"]?.string ?? after["type"]?.string ?? "ingress").lowercased()
                let denies = action.contains { ["deny", "block", "remove", "delete", "revoke", "drop"].contains($0) }
                if !denies && direction != "egress" {
                    cidrs([], ["source", "cidr", "cidr_block", "cidr_blocks", "source_cidr", "from"])
                }
            }
        }
        return out
    }

    mutating func checkIngress(_ c: ResourceChange, prod: Bool, pci: Bool) {
        if c.type == "aws_db_security_group" || c.type == "aws_redshift_security_group" { return }
        for path in openIngressPaths(c) {
            if prod {
                add(RuleCatalog.prodOpenIngress, c, path: path,
                    "\(c.address) is production and allows ingress from the whole internet.",
                    remedy: "a plan that limits this ingress to known address ranges")
            } else if !confirmations.securityReviewed {
                add(RuleCatalog.openIngress, c, path: path,
                    "\(c.address) allows ingress from the whole internet.",
                    remedy: "a narrower address range, a security review, or an approver's override")
            }
            if pci {
                add(RuleCatalog.pciBaseline, c, path: path,
                    "\(c.address) is PCI-scoped and would be reachable from the internet: the cardholder segment must stay isolated.",
                    remedy: "a plan that keeps PCI resources isolated")
            }
        }
    }

    mutating func checkPublicDatabase(_ c: ResourceChange) {
        guard c.hasAfter else { return }
        switch c.type {
        case "aws_db_instance", "aws_rds_cluster_instance", "aws_redshift_cluster", "aws_dms_replication_instance",
             "database":
            for key in ["publicly_accessible", "public"] {
                if case .known(.bool(true)) = c.attribute(key) {
                    add(RuleCatalog.publicDatabase, c, path: [.key(key)],
                        "The database \(c.address) would be reachable from the internet (\(key) = true).",
                        remedy: "\(key) = false (reach it through a private subnet, a VPN or a bastion)")
                }
            }
        case "aws_db_security_group", "aws_redshift_security_group":
            if case .array(let a)? = c.after?["ingress"] {
                for j in a.indices {
                    if let s = a[j]["cidr"]?.string, Evaluation.isOpenCIDR(s) {
                        add(RuleCatalog.publicDatabase, c, path: [.key("ingress"), .index(j), .key("cidr")],
                            "The database security group \(c.address) admits the whole internet.",
                            remedy: "a narrower CIDR or a source security group")
                    }
                }
            }
        default: break
        }
    }

    // MARK: Encryption

    /// Storage types and the attribute that says they are encrypted; `defaultEncrypted` types are
    /// not reported when the attribute is left unset.
    static let encryptionAttributes: [String: [PathStep]] = [
        "aws_db_instance": [.key("storage_encrypted")],
        "aws_rds_cluster": [.key("storage_encrypted")],
        "aws_neptune_cluster": [.key("storage_encrypted")],
        "aws_docdb_cluster": [.key("storage_encrypted")],
        "aws_ebs_volume": [.key("encrypted")],
        "aws_efs_file_system": [.key("encrypted")],
        "aws_redshift_cluster": [.key("encrypted")],
        "aws_elasticache_replication_group": [.key("at_rest_encryption_enabled")],
        "aws_elasticsearch_domain": [.key("encrypt_at_rest"), .index(0), .key("enabled")],
        "aws_opensearch_domain": [.key("encrypt_at_rest"), .index(0), .key("enabled")],
    ]

    mutating func checkEncryption(_ c: ResourceChange, pci: Bool, sseCovered: Set<String>) {
        guard c.hasAfter else { return }
        if let path = Evaluation.encryptionAttributes[c.type] {
            if c.type == "aws_db_instance", case .known(.string(let s)) = c.attribute("replicate_source_db"), !s.isEmpty {
                return  // a replica inherits its source's encryption
            }
            switch c.attribute(path) {
            case .known(.bool(false)), .known(.string("false")):
                add(RuleCatalog.encryptionAtRest, c, path: path,
                    "\(c.address) would store data unencrypted (\(renderPath(path)) = false).",
                    remedy: "\(renderPath(path)) = true")
            case .known(.bool(true)), .known(.string("true")):
                break
            case .unknown:
                reportUnsetEncryption(c, path, pci: pci, why: "is only known after apply")
            case .known, .absent:
                reportUnsetEncryption(c, path, pci: pci, why: "is not set, so the service default applies")
            }
            return
        }
        switch c.type {
        case "aws_instance", "aws_launch_configuration":
            for key in ["root_block_device", "ebs_block_device"] {
                guard case .known(.array(let a)) = c.attribute(key) else { continue }
                for j in a.indices {
                    let path: [PathStep] = [.key(key), .index(j), .key("encrypted")]
                    if case .known(.bool(false)) = c.attribute(path) {
                        add(RuleCatalog.encryptionAtRest, c, path: path,
                            "\(c.address) would attach an unencrypted volume (\(renderPath(path)) = false).",
                            remedy: "encrypted = true")
                    }
                }
            }
        case "aws_s3_bucket":
            let path: [PathStep] = [.key("server_side_encryption_configuration")]
            if case .known(let v) = c.attribute(path), v.isNull || v.array?.isEmpty == true {
                let bucketName = c.string("bucket") ?? ""
                if sseCovered.contains(c.name) || (!bucketName.isEmpty && sseCovered.contains(bucketName)) { return }
                add(RuleCatalog.encryptionAtRest, c, path: path,
                    "The S3 bucket \(c.address) has no server-side encryption in this plan.",
                    remedy: "a server_side_encryption_configuration (SSE-S3 or SSE-KMS) for the bucket")
                if pci {
                    add(RuleCatalog.pciBaseline, c, path: path, "\(c.address) is PCI-scoped and unencrypted.",
                        remedy: "server-side encryption with KMS")
                }
            }
        default:
            if c.provider == "changeset" {
                for key in ["encrypted", "storage_encrypted", "encryption"] {
                    if case .known(.bool(false)) = c.attribute(key) {
                        add(RuleCatalog.encryptionAtRest, c, path: [.key(key)],
                            "\(c.address) would store data unencrypted (\(key) = false).", remedy: "\(key) = true")
                    }
                }
            }
        }
    }

    mutating func reportUnsetEncryption(_ c: ResourceChange, _ path: [PathStep], pci: Bool, why: String) {
        if pci {
            add(RuleCatalog.pciBaseline, c, path: path,
                "\(c.address) is PCI-scoped and its encryption at rest \(why); PCI data must be encrypted explicitly.",
                remedy: "\(renderPath(path)) = true")
        }
        if !confirmations.securityReviewed {
            add(RuleCatalog.encryptionExplicit, c, path: path,
                "Encryption at rest of \(c.address) \(why): neither confirmed encrypted nor unencrypted.",
                remedy: "\(renderPath(path)) = true in the plan, a security review, or an approver's override")
        }
    }

    /// Buckets (by name or by resource name) that a separate SSE configuration resource covers.
    func sseCoveredBuckets() -> Set<String> {
        var out = Set<String>()
        for c in plan.changes where c.type == "aws_s3_bucket_server_side_encryption_configuration" && !c.actions.contains(.delete) {
            out.insert(c.name)
            if let b = c.string("bucket") { out.insert(b) }
        }
        return out
    }

    // MARK: Audit infrastructure

    /// Names of buckets that hold logs: CloudTrail targets, logging targets, log-delivery ACLs.
    func logBucketNames() -> Set<String> {
        var out = Set<String>()
        for c in plan.changes {
            guard let v = c.after ?? c.before else { continue }
            if c.type == "aws_cloudtrail", let b = v["s3_bucket_name"]?.string { out.insert(b) }
            if c.type == "aws_s3_bucket_logging", let b = v["target_bucket"]?.string { out.insert(b) }
            if c.type == "aws_s3_bucket" {
                if v["acl"]?.string == "log-delivery-write", let b = v["bucket"]?.string { out.insert(b) }
                if case .array(let logging)? = v["logging"] {
                    for l in logging { if let b = l["target_bucket"]?.string { out.insert(b) } }
                }
            }
        }
        return out
    }

    mutating func checkAudit(_ c: ResourceChange, logBuckets: Set<String>) {
        var reason: String?
        let isAuditType: Bool
        if let known = auditTypeCache[c.type] { isAuditType = known } else {
            let type = lowerBytes(c.type)
            isAuditType = classifier.auditTypePatterns.contains { globMatchBytes($0, type) }
            auditTypeCache[c.type] = isAuditType
        }
        if isAuditType {
            reason = "it is audit infrastructure (\(c.type))"
        } else {
            // The first of its names (address, name, identifiers, Name tag) that a pattern protects.
            func isProtected(_ n: String) -> Bool {
                classifier.protectedPatterns.contains { $0.matchesLowering(n) }
            }
            var protectedName: String?
            if isProtected(c.address) {
                protectedName = c.address
            } else if isProtected(c.name) {
                protectedName = c.name
            } else if let n = c.contextNames.first(where: isProtected) {
                protectedName = n
            } else if let n = Classifier.nameTag(c), isProtected(n) {
                protectedName = n
            }
            if let n = protectedName {
                reason = "its name \"\(n)\" is protected by policy"
            } else if c.type.hasPrefix("aws_s3_bucket") {
                let v = c.after ?? c.before
                if let b = v?["bucket"]?.string, logBuckets.contains(b) {
                    reason = "the bucket \"\(b)\" holds logs"
                } else if c.type == "aws_s3_bucket", v?["acl"]?.string == "log-delivery-write" {
                    reason = "it is a log-delivery bucket"
                }
            }
        }
        guard let reason else { return }
        add(RuleCatalog.auditInfrastructure, c,
            "\(c.address) would be changed (\(c.actions.map(\.rawValue).joined(separator: ", "))), but \(reason): audit and logging infrastructure is never changed through an agent.",
            remedy: "a plan without this resource; such changes go through the audit team's own process")
    }

    // MARK: Data scopes

    mutating func checkPCI(_ c: ResourceChange, pci: Bool) {
        guard pci, c.hasAfter else { return }
        if c.type == "aws_instance" || c.type == "aws_launch_configuration" {
            if case .known(.bool(true)) = c.attribute("associate_public_ip_address") {
                add(RuleCatalog.pciBaseline, c, path: [.key("associate_public_ip_address")],
                    "\(c.address) is PCI-scoped and would get a public IP address: it must stay in an isolated segment.",
                    remedy: "associate_public_ip_address = false")
            }
            let sgs = ["vpc_security_group_ids", "security_groups"].map { c.attribute($0) }
            let noFirewall = sgs.allSatisfy { s in
                if case .known(let v) = s { return v.isNull || v.array?.isEmpty == true }
                return s == .absent
            }
            if noFirewall {
                add(RuleCatalog.pciBaseline, c, path: [.key("vpc_security_group_ids")],
                    "\(c.address) is PCI-scoped and has no security group (firewall).",
                    remedy: "vpc_security_group_ids with a restrictive security group")
            }
        }
        if c.type == "aws_s3_bucket", case .known(.array(let a)) = c.attribute("logging"), a.isEmpty {
            add(RuleCatalog.pciBaseline, c, path: [.key("logging")],
                "\(c.address) is PCI-scoped and has no access logging.", remedy: "access logging to a log bucket")
        }
        if c.type == "aws_db_instance", case .known(let v) = c.attribute("enabled_cloudwatch_logs_exports"),
           v.isNull || v.array?.isEmpty == true {
            add(RuleCatalog.pciBaseline, c, path: [.key("enabled_cloudwatch_logs_exports")],
                "\(c.address) is PCI-scoped and exports no logs for monitoring.",
                remedy: "enabled_cloudwatch_logs_exports with the engine's audit logs")
        }
    }

    mutating func checkResidency(_ c: ResourceChange, scopes: Set<DataScope>) {
        guard c.hasAfter, let region = c.region else { return }
        for scope in scopes.sorted(by: { $0.rawValue < $1.rawValue }) {
            guard let allowed = policy.regionAllowLists[scope.rawValue], !allowed.isEmpty else { continue }
            if allowed.contains(where: { globMatch($0, region) }) { continue }
            let rule = scope == .gdpr ? RuleCatalog.gdprResidency : RuleCatalog.pciBaseline
            add(rule, c, path: [.key("region")],
                "\(c.address) holds \(scope == .gdpr ? "GDPR-scoped or personal" : "PCI-scoped") data but would be in \(region), outside the allowed regions (\(allowed.joined(separator: ", "))).",
                remedy: "a plan that places it in \(allowed.joined(separator: ", "))", showValue: false)
        }
    }

    // MARK: Confirmations

    mutating func checkDeletion(_ c: ResourceChange) {
        guard c.isDestructive, !confirmations.deletionConfirmed.contains(c.address) else { return }
        add(RuleCatalog.deletionConfirmation, c,
            "\(c.address) would be \(c.isReplace ? "destroyed and re-created (replaced)" : "deleted"); its owner has not confirmed this by name.",
            remedy: "the owner confirms the deletion of \"\(c.address)\" through the Override service")
    }

    mutating func checkTicket() {
        let prodChanges = plan.changes.indices.filter { plan.changes[$0].isChange && isProd[$0] }
        guard let first = prodChanges.first else { return }
        let ticket = (changeTicket ?? "").trimmingSpaces
        let ok = !ticket.isEmpty && (policy.changeTicketPrefixes.isEmpty || policy.changeTicketPrefixes.contains { ticket.hasPrefix($0) })
        guard !ok else { return }
        let why = ticket.isEmpty ? "no change ticket was given" : "the change ticket does not have an accepted prefix (\(policy.changeTicketPrefixes.joined(separator: ", ")))"
        add(RuleCatalog.prodChangeTicket, plan.changes[first],
            "This plan changes production (\(prodChanges.count) resource\(prodChanges.count == 1 ? "" : "s")), but \(why).",
            remedy: "a change ticket id for this change")
    }

    mutating func checkCost() {
        guard let cost, cost > policy.costThresholdMonthlyUSD, !confirmations.financeApproved else { return }
        add(RuleCatalog.costThreshold, nil,
            "This plan raises the monthly cost by \(money(cost)), above the \(money(policy.costThresholdMonthlyUSD)) threshold.",
            remedy: "approval by a finance approver")
    }

    // MARK: Soft and advisory

    mutating func checkTags(_ c: ResourceChange) {
        guard c.hasAfter, c.carriesTags, !policy.requiredTags.isEmpty else { return }
        let missing = policy.requiredTags.filter { tag in
            c.tag(tag) == nil && !c.tags.keys.contains { $0.lowercased() == tag.lowercased() }
        }
        guard !missing.isEmpty else { return }
        if ResourceChange.isMarked(c.afterUnknown, [.key("tags_all")]) { return }  // default tags may supply them
        add(RuleCatalog.requiredTags, c, path: [.key("tags")],
            "\(c.address) is missing the required tag\(missing.count == 1 ? "" : "s") \(missing.joined(separator: ", ")).",
            remedy: "the tags \(missing.joined(separator: ", ")) (or provider default_tags), or an approver's override")
    }

    mutating func checkAdvisories(_ c: ResourceChange) {
        if c.actions.contains(.create), c.type == "aws_instance" || c.type == "instance" {
            var spot = false
            if case .known(.array(let a)) = c.attribute("instance_market_options"),
               a.contains(where: { $0["market_type"]?.string == "spot" }) { spot = true }
            if !spot {
                add(RuleCatalog.onDemandCapacity, c,
                    "\(c.address) runs on on-demand capacity\(c.count > 1 ? " (\(c.count) instances)" : ""); if it runs for months, reserved capacity or a savings plan costs less.",
                    remedy: "nothing required; consider reserved capacity")
            }
        }
        if c.hasAfter, let path = Redactor.firstSecret(in: c) {
            add(RuleCatalog.plaintextSecret, c, path: path,
                "\(c.address) carries what looks like a secret in clear text at \(renderPath(path)); it will sit in the plan and the state.",
                remedy: "a secret manager reference or a sensitive variable")
        }
    }

    // MARK: Intent

    mutating func checkIntent() {
        let changes = plan.changes.enumerated().filter { $0.element.isChange }
        guard !changes.isEmpty else { return }
        let verbs = intent.verbs

        // intent-action: destruction that was not asked for.
        for (_, c) in changes where c.isDestructive {
            if verbs.contains(.delete) { continue }
            if c.isReplace && !verbs.isDisjoint(with: [.replace, .modify, .scale]) { continue }
            let asked = verbs.isEmpty ? "did not ask for a deletion" : "asked to \(verbs.map(\.rawValue).sorted().joined(separator: "/"))"
            add(RuleCatalog.intentAction, c,
                "The plan \(c.isReplace ? "destroys and re-creates" : "deletes") \(c.address), but the request \(asked), not to delete anything.",
                remedy: "a new plan that does only what was asked, or an approver's override")
        }

        // intent-scope: extra actions the request does not mention.
        for (_, c) in changes where c.isAdditionalAction {
            let words = Set(wordsOf(c.name)).filter { VerbClass.of($0) == nil && !RequestIntent.stopWords.contains($0) }
            if !words.isDisjoint(with: intent.contentWords) { continue }
            add(RuleCatalog.intentScope, c,
                "The plan also changes \(c.address), which the request does not mention.",
                remedy: "a new plan without this action, or an approver's override")
        }

        // intent-scope: environments beyond the request.
        let prodIdx = changes.filter { env[$0.offset] == .production }
        if !prodIdx.isEmpty && !intent.mentionsProduction {
            let nonProd = changes.contains { env[$0.offset] == .nonProduction }
            if intent.mentionsNonProduction || nonProd {
                for (_, c) in prodIdx where !c.isAdditionalAction {
                    add(RuleCatalog.intentScope, c,
                        "The plan changes production (\(c.address)), but the request is not about production.",
                        remedy: "a new plan limited to the environment asked for, or an approver's override")
                }
                for (_, c) in prodIdx where c.isAdditionalAction {
                    add(RuleCatalog.intentScope, c,
                        "The plan changes production (\(c.address)), but the request is not about production.",
                        remedy: "a new plan limited to the environment asked for, or an approver's override")
                }
            }
        }

        // intent-scope: a risky change (destructive, or to production) that refers to none of the
        // resources the request names. Judged change by change, so adding a change never lifts it.
        if !intent.namedIDs.isEmpty {
            for (i, c) in changes where c.isDestructive || isProd[i] {
                let hay = haystack(c)
                if intent.namedIDs.contains(where: { hay.contains($0) }) { continue }
                add(RuleCatalog.intentScope, c,
                    "The request names \(intent.namedIDs.count == 1 ? "a specific resource" : "specific resources"), but \(c.address) is not \(intent.namedIDs.count == 1 ? "it" : "one of them") and would be \(c.isDestructive ? "destroyed" : "changed in production").",
                    remedy: "a new plan that acts only on the resources named, or an approver's override")
            }
        }

        // intent-scope: more resources created than the request counts.
        for (noun, asked) in intent.counts.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            let created = changes.filter { $0.element.actions.contains(.create) && Noun.of(type: $0.element.type) == noun }
            let total = created.reduce(0) { $0 + $1.element.count }
            if total > asked, let first = created.first?.element {
                add(RuleCatalog.intentScope, first,
                    "The request asks for \(asked) \(noun.rawValue)\(asked == 1 ? "" : "s"), but the plan creates \(total).",
                    remedy: "a new plan with the number asked for, or an approver's override")
            }
        }
    }

    /// Everything a change is known by, normalised, for matching named ids.
    func haystack(_ c: ResourceChange) -> String {
        var parts = [normalise(c.address), normalise(c.name)]
        var stack: [JSONValue] = [c.after, c.before].compactMap { $0 }
        var visited = 0
        while let v = stack.popLast(), visited < 10_000 {
            visited += 1
            switch v {
            case .string(let s): parts.append(normalise(s))
            case .array(let a): stack.append(contentsOf: a)
            case .object(let o): stack.append(contentsOf: o.values)
            default: break
            }
        }
        return parts.joined(separator: "|")
    }
}

extension JSONValue {
    subscript(base: [PathStep], key: String) -> JSONValue? {
        var v = self
        for step in base {
            switch step {
            case .key(let k): guard let n = v[k] else { return nil }; v = n
            case .index(let i): guard let n = v[i] else { return nil }; v = n
            }
        }
        return v[key]
    }
}

func money(_ v: Double) -> String {
    let rounded = (v * 100).rounded() / 100
    let whole = Int64(rounded.magnitude)
    var digits = String(whole)
    var grouped = ""
    while digits.count > 3 {
        grouped = "," + digits.suffix(3) + grouped
        digits = String(digits.dropLast(3))
    }
    grouped = digits + grouped
    let cents = Int64(((rounded.magnitude - Double(whole)) * 100).rounded())
    return (v < 0 ? "-$" : "$") + grouped + (cents == 0 ? "" : "." + (cents < 10 ? "0" : "") + String(cents))
}
