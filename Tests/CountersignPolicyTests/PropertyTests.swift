import Testing
@testable import CountersignPolicy

@Suite("Properties: monotone and deterministic")
struct PropertyTests {
    /// Resource changes to add, taken from the public plans and the scenarios.
    static func donorChanges() throws -> [JSONValue] {
        var out: [JSONValue] = []
        for file in Fixtures.jsonFiles(in: Fixtures.publicPlans) {
            let root = try JSONReader.parse(try Fixtures.publicPlan(file), maxDepth: 128)
            let rcs = root["resource_changes"]?.array ?? []
            // A spread of each plan's changes keeps the test fast.
            out.append(contentsOf: rcs.enumerated().filter { $0.offset % 5 == 0 }.map(\.element))
        }
        for file in Fixtures.jsonFiles(in: Fixtures.scenarios) {
            let s = try Scenario(file: file)
            out.append(contentsOf: s.planValue["resource_changes"]?.array ?? [])
        }
        return out
    }

    static func adding(_ change: JSONValue, to plan: JSONValue) -> JSONValue {
        guard case .object(var o) = plan else { return plan }
        var rcs = o["resource_changes"]?.array ?? []
        if case .object(var c) = change, let addr = c["address"]?.string {
            // Keep addresses unique.
            c["address"] = .string(addr + "_added")
            rcs.append(.object(c))
        } else {
            rcs.append(change)
        }
        o["resource_changes"] = .array(rcs)
        return .object(o)
    }

    func isAtLeastAsStrict(_ a: Decision, _ b: Decision) -> Bool {
        a.verdict >= b.verdict && (a.cannotOverride || !b.cannotOverride)
    }

    @Test("adding a change to a Terraform plan never makes the decision less strict",
          arguments: Fixtures.jsonFiles(in: Fixtures.scenarios))
    func addingChanges(_ file: String) throws {
        let s = try Scenario(file: file)
        let engine = PolicyEngine()
        let base = try engine.evaluate(s.request, confirmations: s.confirmations)
        if s.request.planFormat == .terraformJSON {
            for donor in try PropertyTests.donorChanges() {
                var r = s.request
                r.plan = Array(PropertyTests.adding(donor, to: s.planValue).compactText.utf8)
                let d = try engine.evaluate(r, confirmations: s.confirmations)
                #expect(isAtLeastAsStrict(d, base), "\(file) + \(donor["address"]?.string ?? "?")")
                #expect(Set(base.findings.filter { $0.enforcement == .hard }.map(\.rule))
                    .isSubset(of: Set(d.findings.map(\.rule))))
            }
        } else {
            // Change sets: add a deletion and an extra action.
            guard case .object(var o) = s.planValue else { return }
            var dels = o["resources_to_delete"]?.array ?? []
            dels.append(.string("added-vpc-9"))
            o["resources_to_delete"] = .array(dels)
            var r = s.request
            r.plan = Array(JSONValue.object(o).compactText.utf8)
            #expect(isAtLeastAsStrict(try engine.evaluate(r, confirmations: s.confirmations), base))
            var extra = o["additional_actions"]?.object ?? [:]
            extra["open_prod_db"] = .object(["action": .string("add_rule"), "source": .string("0.0.0.0/0")])
            o["additional_actions"] = .object(extra)
            r.plan = Array(JSONValue.object(o).compactText.utf8)
            let d = try engine.evaluate(r, confirmations: s.confirmations)
            #expect(d.verdict == .veto)
            #expect(d.cannotOverride)
        }
    }

    @Test("removing a confirmation never makes the decision less strict",
          arguments: Fixtures.jsonFiles(in: Fixtures.scenarios))
    func removingConfirmations(_ file: String) throws {
        let s = try Scenario(file: file)
        let engine = PolicyEngine()
        // Start from every confirmation there is, then take them away one at a time.
        let plan = try Plan.parse(s.request.plan, format: s.request.planFormat)
        let all = Confirmations(deletionConfirmed: Set(plan.changes.map(\.address)), financeApproved: true, securityReviewed: true)
        var previous = try engine.evaluate(s.request, confirmations: all)
        var current = all
        for address in all.deletionConfirmed.sorted() {
            current.deletionConfirmed.remove(address)
            let d = try engine.evaluate(s.request, confirmations: current)
            #expect(isAtLeastAsStrict(d, previous))
            previous = d
        }
        for step in 0..<3 {
            if step == 0 { current.financeApproved = false }
            if step == 1 { current.securityReviewed = false }
            var r = s.request
            if step == 2 { r.changeTicket = nil }
            let d = try engine.evaluate(r, confirmations: current)
            #expect(isAtLeastAsStrict(d, previous))
            previous = d
        }
    }

    @Test("evaluation is deterministic, also across key order and whitespace",
          arguments: Fixtures.jsonFiles(in: Fixtures.scenarios) + [Fixtures.checkovPlan])
    func deterministic(_ file: String) throws {
        let engine = PolicyEngine()
        let request: EvaluationRequest
        let confirmations: Confirmations
        if file == Fixtures.checkovPlan {
            request = EvaluationRequest(requestID: "x", userRequest: "Deploy the stack", owner: "o",
                                        plan: try Fixtures.publicPlan(file), planFormat: .terraformJSON)
            confirmations = .none
        } else {
            let s = try Scenario(file: file)
            request = s.request
            confirmations = s.confirmations
        }
        let a = try engine.evaluate(request, confirmations: confirmations)
        let b = try engine.evaluate(request, confirmations: confirmations)
        #expect(a == b)
        // The same plan with whitespace and a different key order: same findings and summary.
        let value = try JSONReader.parse(request.plan, maxDepth: 128)
        var pretty = request
        pretty.plan = Array(("\n  " + value.compactText.replacingOccurrences(of: ",\"", with: ", \"") + "\n").utf8)
        let c = try engine.evaluate(pretty, confirmations: confirmations)
        #expect(c.findings == a.findings)
        #expect(c.summary == a.summary)
        #expect(c.planSHA256 != a.planSHA256 || pretty.plan == request.plan)
    }
}
