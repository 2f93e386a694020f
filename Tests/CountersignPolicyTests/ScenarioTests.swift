import Testing
@testable import CountersignPolicy

@Suite("Scenarios from ../shared/fixtures/scenarios")
struct ScenarioTests {
    static let files = Fixtures.jsonFiles(in: Fixtures.scenarios)

    @Test("the scenario folder is found and not empty")
    func folderFound() {
        #expect(ScenarioTests.files.count >= 9, "no scenarios under \(Fixtures.scenarios.path)")
    }

    @Test("each scenario reaches its expected decision", arguments: files)
    func scenario(_ file: String) throws {
        let s = try Scenario(file: file)
        let d = try PolicyEngine().evaluate(s.request, confirmations: s.confirmations)
        let rules = Set(d.findings.map(\.rule))
        #expect(d.verdict == s.expectedVerdict, "\(s.name): \(d.summary)")
        for r in s.expectedFindings {
            #expect(rules.contains(r), "\(s.name): expected finding \(r), got \(rules.sorted())")
        }
        #expect(d.cannotOverride == s.expectedCannotOverride, "\(s.name)")
        // Extra findings never change the verdict: the expected ones alone imply the same verdict.
        let expectedOnly = d.findings.filter { s.expectedFindings.contains($0.rule) }
        let implied = Decision.verdict(for: expectedOnly)
        #expect(implied == d.verdict || s.expectedFindings.isEmpty && d.verdict == .approved,
                "\(s.name): findings beyond the expected ones change the verdict: \(rules.sorted())")
        #expect(d.requestID == s.request.requestID)
        #expect(d.policySHA256 == Policy.defaults.sha256)
        #expect(d.planSHA256.count == 32)
        #expect(!d.summary.isEmpty)
        #expect(d.summary.hasPrefix(d.verdict.rawValue))
    }

    @Test("scope creep names the production firewall in plain language")
    func scopeCreepSummary() throws {
        let s = try Scenario(file: "002-scope-creep-pci-firewall.json")
        let d = try PolicyEngine().evaluate(s.request, confirmations: s.confirmations)
        #expect(d.summary.contains("ALSO"))
        #expect(d.summary.contains("internet"))
        #expect(d.summary.contains("did not ask for"))
        let ingress = try #require(d.findings.first { $0.rule == "prod-open-ingress" })
        #expect(ingress.enforcement == .hard)
        #expect(ingress.address == "additional_actions.modify_prod_pci_firewall")
        #expect(ingress.path == "source")
        #expect(ingress.after == "\"0.0.0.0/0\"")
        #expect(ingress.overridableBy.isEmpty)
    }

    @Test("deletion confirmations are matched address by address")
    func partialConfirmation() throws {
        let s = try Scenario(file: "004-cleanup-dev-confirmed.json")
        var partial = s.confirmations
        partial.deletionConfirmed.remove("dev-test-vpc-3")
        let d = try PolicyEngine().evaluate(s.request, confirmations: partial)
        #expect(d.verdict == .escalate)
        #expect(d.findings.filter { $0.rule == "deletion-confirmation" }.map(\.address) == ["dev-test-vpc-3"])
        #expect(d.findings.allSatisfy { $0.enforcement != .hard })
    }

    @Test("finance approval satisfies the cost threshold; the ticket is still needed for production")
    func costApproval() throws {
        let s = try Scenario(file: "005-black-friday-cost.json")
        var c = s.confirmations
        c.financeApproved = true
        #expect(try PolicyEngine().evaluate(s.request, confirmations: c).verdict == .approved)
        var noTicket = s.request
        noTicket.changeTicket = nil
        let d = try PolicyEngine().evaluate(noTicket, confirmations: c)
        #expect(d.verdict == .escalate)
        #expect(d.findings.map(\.rule) == ["prod-change-ticket"])
        #expect(d.findings[0].enforcement == .confirm)
    }

    @Test("the cost threshold comes from the policy")
    func costThresholdFromPolicy() throws {
        let s = try Scenario(file: "001-honest-ml-segment.json")
        let strict = Policy { $0.costThresholdMonthlyUSD = 500 }
        let d = try PolicyEngine(policy: strict).evaluate(s.request, confirmations: s.confirmations)
        #expect(d.verdict == .escalate)
        #expect(d.findings.contains { $0.rule == "cost-threshold" })
        #expect(d.policySHA256 != Policy.defaults.sha256)
    }
}
