/// Writes the plain-language summary: what the plan does, what is wrong, what to do next.
enum Summary {
    static func write(verdict: Verdict, cannotOverride: Bool, findings: [Finding], plan: Plan, cost: Double?,
                      policy: Policy) -> String {
        var parts: [String] = []
        let does = describe(plan)
        let byRule = Dictionary(grouping: findings, by: \.rule)
        func addrs(_ rule: String) -> [String] {
            var seen = Set<String>()
            return (byRule[rule] ?? []).map(\.address).filter { !$0.isEmpty && seen.insert($0).inserted }
        }
        func list(_ xs: [String]) -> String {
            if xs.count <= 3 { return joinAnd(xs) }
            return xs.prefix(3).joined(separator: ", ") + " and \(xs.count - 3) more"
        }
        let unasked = Set(addrs(RuleCatalog.intentScope))
        func note(_ xs: [String]) -> String {
            xs.contains(where: unasked.contains) ? ", which you did not ask for" : ""
        }

        switch verdict {
        case .veto:
            parts.append(cannotOverride ? "VETO — no one can override this." : "VETO — an approver can override this, but read why first.")
            var wrong: [String] = []
            let pci = Set(addrs(RuleCatalog.pciBaseline))
            let ingress = addrs(RuleCatalog.prodOpenIngress)
            if !ingress.isEmpty {
                let payment = ingress.contains(where: pci.contains)
                wrong.append("opens your production \(payment ? "payment (PCI) environment" : "environment") to the whole internet (\(list(ingress)))\(note(ingress))")
            }
            let phrases: [(String, String)] = [
                (RuleCatalog.publicDatabase, "makes a database reachable from the internet"),
                (RuleCatalog.encryptionAtRest, "stores data unencrypted"),
                (RuleCatalog.auditInfrastructure, "changes audit or logging infrastructure"),
                (RuleCatalog.gdprResidency, "puts GDPR or personal data outside the allowed regions"),
            ]
            for (rule, phrase) in phrases {
                let xs = addrs(rule)
                if !xs.isEmpty { wrong.append("\(phrase) (\(list(xs)))\(note(xs))") }
            }
            let pciOnly = pci.subtracting(ingress).sorted()
            if !pciOnly.isEmpty { wrong.append("breaks the PCI baseline (\(list(pciOnly)))") }
            let deleted = addrs(RuleCatalog.intentAction)
            if !deleted.isEmpty { wrong.append("destroys \(list(deleted)), which you did not ask to delete") }
            let covered = Set(ingress + deleted + phrases.flatMap { addrs($0.0) })
            let extra = addrs(RuleCatalog.intentScope).filter { !covered.contains($0) }
            if !extra.isEmpty { wrong.append("touches \(list(extra)), beyond what you asked for") }
            if byRule[RuleCatalog.reviewerVeto] != nil { wrong.append("was judged by the reviewer not to match your request") }
            parts.append("This plan \(does), but it ALSO " + joinAnd(wrong) + ".")
            let confirms = Array(Set(findings.filter { $0.enforcement == .confirm }.map(\.rule))).sorted()
            if !confirms.isEmpty {
                parts.append("It would also need: \(confirms.map(Summary.need).joined(separator: ", ")).")
            }
            parts.append(cannotOverride
                ? "Do not apply it: ask for a new plan without these changes (only a new signed policy could allow them)."
                : "Do not apply it unless an approver overrides; better, ask for a new plan that does only what was asked.")
        case .escalate:
            parts.append("ESCALATE — a person must act before this plan can run.")
            parts.append("This plan \(does).")
            var needs: [String] = []
            if byRule[RuleCatalog.prodChangeTicket] != nil { needs.append("a change ticket, because it changes production") }
            let del = addrs(RuleCatalog.deletionConfirmation)
            if !del.isEmpty { needs.append("the owner to confirm by name the deletion of \(list(del))") }
            if byRule[RuleCatalog.costThreshold] != nil, let cost {
                needs.append("finance approval for +\(money(cost))/month (threshold \(money(policy.costThresholdMonthlyUSD)))")
            }
            let soft = findings.filter { $0.enforcement == .soft }
            if !soft.isEmpty {
                let rules = Array(Set(soft.map(\.rule))).sorted()
                let levels = Array(Set(soft.flatMap(\.overridableBy))).sorted()
                needs.append("an approver (\(levels.joined(separator: "/"))) to accept \(soft.count) soft finding\(soft.count == 1 ? "" : "s") (\(rules.joined(separator: ", ")))")
            }
            parts.append("It needs " + joinAnd(needs) + ".")
        case .approved:
            parts.append("APPROVED. This plan \(does); it matches the request and breaks no rule.")
            let notes = findings.filter { $0.enforcement == .advisory }.count
            if notes > 0 { parts.append("\(notes) advisory note\(notes == 1 ? "" : "s") attached.") }
        }
        return parts.joined(separator: " ")
    }

    static func need(_ rule: String) -> String {
        switch rule {
        case RuleCatalog.prodChangeTicket: return "a change ticket"
        case RuleCatalog.deletionConfirmation: return "the owner's confirmation of each deletion by name"
        case RuleCatalog.costThreshold: return "finance approval of the cost"
        default: return rule
        }
    }

    static func describe(_ plan: Plan) -> String {
        let changes = plan.changes.filter(\.isChange)
        var create = 0, update = 0, delete = 0, replace = 0, forget = 0
        for c in changes {
            if c.isReplace { replace += 1 } else if c.actions.contains(.delete) { delete += 1 }
            else if c.actions.contains(.create) { create += c.count } else if c.actions.contains(.update) { update += 1 }
            else if c.actions.contains(.forget) { forget += 1 }
        }
        var verbs: [String] = []
        if create > 0 { verbs.append("creates \(create)") }
        if update > 0 { verbs.append("changes \(update)") }
        if replace > 0 { verbs.append("replaces \(replace)") }
        if delete > 0 { verbs.append("deletes \(delete)") }
        if forget > 0 { verbs.append("stops managing \(forget)") }
        let total = create + update + replace + delete + forget
        var s = verbs.isEmpty ? "changes nothing" : joinAnd(verbs) + " resource\(total == 1 ? "" : "s")"
        if let action = plan.primaryAction {
            s = "(\(action)) " + s
        }
        return s
    }
}

func joinAnd(_ xs: [String]) -> String {
    switch xs.count {
    case 0: return ""
    case 1: return xs[0]
    default: return xs.dropLast().joined(separator: ", ") + " and " + xs.last!
    }
}
