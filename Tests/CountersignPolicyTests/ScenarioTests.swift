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

@Suite("Intent check")
struct IntentTests {
    func decide(_ request: String, _ changes: String, ticket: String? = "CHG-1") throws -> Decision {
        let plan = "{\"format_version\":\"1.2\",\"resource_changes\":[\(changes)]}"
        return try PolicyEngine().evaluate(EvaluationRequest(requestID: "r", userRequest: request, owner: "o",
                                                             plan: Array(plan.utf8), planFormat: .terraformJSON,
                                                             changeTicket: ticket))
    }

    static let quarantine = """
    {"address":"aws_security_group_rule.q","mode":"managed","type":"aws_security_group_rule","name":"q",
     "change":{"actions":["create"],"after":{"type":"egress","cidr_blocks":["127.0.0.1/32"],
     "description":"quarantine i-0abc123"}}}
    """
    static let prodSG = """
    {"address":"aws_security_group.prod_web","mode":"managed","type":"aws_security_group","name":"prod_web",
     "change":{"actions":["update"],"before":{"name":"prod-web"},"after":{"name":"prod-web","ingress":[]}}}
    """

    @Test("a production change unrelated to the instance named in the request is out of scope")
    func namedTargets() throws {
        let ok = try decide("Isolate instance i-0abc123 flagged by GuardDuty", IntentTests.quarantine)
        #expect(ok.verdict == .approved)
        let extra = try decide("Isolate instance i-0abc123 flagged by GuardDuty", IntentTests.quarantine + "," + IntentTests.prodSG)
        #expect(extra.findings.contains { $0.rule == "intent-scope" && $0.address == "aws_security_group.prod_web" })
        #expect(extra.verdict == .veto)
        #expect(!extra.cannotOverride)
        #expect(extra.findings.first { $0.rule == "intent-scope" }?.overridableBy == ["L2"])
    }

    @Test("counts: asking for a database and getting three is out of scope")
    func counts() throws {
        func db(_ n: Int) -> String {
            """
            {"address":"aws_db_instance.d\(n)","mode":"managed","type":"aws_db_instance","name":"d\(n)",
             "change":{"actions":["create"],"after":{"storage_encrypted":true,"publicly_accessible":false}}}
            """
        }
        #expect(try decide("Deploy a Postgres database for analytics", db(1)).verdict == .approved)
        let three = try decide("Deploy a Postgres database for analytics", [db(1), db(2), db(3)].joined(separator: ","))
        #expect(three.findings.contains { $0.rule == "intent-scope" && $0.message.contains("creates 3") })
        #expect(try decide("Deploy three Postgres databases", [db(1), db(2), db(3)].joined(separator: ",")).verdict == .approved)
    }

    @Test("a request about dev that touches production is out of scope")
    func environments() throws {
        let dev = """
        {"address":"aws_instance.dev_api","mode":"managed","type":"aws_instance","name":"dev_api",
         "change":{"actions":["update"],"before":{"instance_type":"t3.small"},"after":{"instance_type":"t3.large"}}}
        """
        let d = try decide("Resize the dev api instance", dev + "," + IntentTests.prodSG)
        #expect(d.findings.contains { $0.rule == "intent-scope" && $0.address == "aws_security_group.prod_web" })
        #expect(try decide("Resize the dev api instance", dev).verdict == .approved)
    }

    @Test("a reviewer can only make a decision stricter")
    func reviewer() throws {
        let base = try decide("Isolate instance i-0abc123", IntentTests.quarantine)
        #expect(base.verdict == .approved)
        #expect(base.applying(review: ReviewOpinion(verdict: .approved, reason: "fine")) == base)
        let esc = base.applying(review: ReviewOpinion(verdict: .escalate, reason: "unsure"))
        #expect(esc.verdict == .escalate)
        let veto = esc.applying(review: ReviewOpinion(verdict: .veto, reason: "wrong instance"))
        #expect(veto.verdict == .veto)
        #expect(!veto.cannotOverride)
        #expect(veto.applying(review: ReviewOpinion(verdict: .approved, reason: "ok")).verdict == .veto)
        #expect(base.applyingReviewerFailure("timeout after 5 s").verdict == .escalate)
        let hard = try decide("Deploy a database", """
            {"address":"aws_db_instance.d","mode":"managed","type":"aws_db_instance","name":"d",
             "change":{"actions":["create"],"after":{"storage_encrypted":false}}}
            """)
        #expect(hard.applying(review: ReviewOpinion(verdict: .approved, reason: "ok")).cannotOverride)
    }
}
