import Foundation
import Testing
@testable import CountersignPolicy

@Suite("Policy file")
struct PolicyConfigTests {
    func error(_ yaml: String) -> String? {
        do {
            _ = try Policy.load(yaml: yaml)
            return nil
        } catch let e as PolicyError {
            #expect(e.code == .invalidPolicy)
            return e.message
        } catch {
            return "\(error)"
        }
    }

    @Test("policy/default.yaml is exactly the built-in defaults")
    func defaultFile() throws {
        let url = Fixtures.repoRoot.appendingPathComponent("policy/default.yaml")
        let p = try Policy.load(yaml: String(decoding: try Data(contentsOf: url), as: UTF8.self))
        #expect(p == Policy.defaults)
        #expect(p.sha256Hex == Policy.defaults.sha256Hex)
    }

    @Test("an empty file is the defaults; the digest is stable and depends on content only")
    func digest() throws {
        #expect(try Policy.load(yaml: "") == Policy.defaults)
        let a = try Policy.load(yaml: "cost:\n  threshold_monthly_usd: 2000\nrequired_tags: [Owner]\n")
        let b = try Policy.load(yaml: "# same, other order\nrequired_tags:\n  - Owner\ncost: {threshold_monthly_usd: 2000.0}\n")
        #expect(a.sha256 == b.sha256)
        #expect(a.sha256 != Policy.defaults.sha256)
        #expect(a.sha256.count == 32)
        #expect(a.canonicalJSON.hasPrefix("{\"approvals\":"))
        #expect(!a.canonicalJSON.contains(" "))
    }

    @Test("errors name the key", arguments: [
        ("colour: blue\n", "colour"),
        ("cost:\n  threshold: 5\n", "cost.threshold"),
        ("cost:\n  threshold_monthly_usd: lots\n", "cost.threshold_monthly_usd"),
        ("cost:\n  threshold_monthly_usd: -5\n", "cost.threshold_monthly_usd"),
        ("required_tags: Owner\n", "required_tags"),
        ("rules:\n  public-database: false\n", "rules.public-database"),
        ("rules:\n  prod-change-ticket: off\n", "rules.prod-change-ticket"),
        ("rules:\n  intent-scope: false\n", "rules.intent-scope"),
        ("rules:\n  no-such-rule: false\n", "rules.no-such-rule"),
        ("approvals:\n  prod-open-ingress: L4\n", "approvals.prod-open-ingress"),
        ("approvals:\n  required-tags: L9\n", "approvals.required-tags"),
        ("regions:\n  hipaa: [us-east-1]\n", "regions.hipaa"),
        ("version: 2\n", "version"),
        ("production:\n  words: [\"pro d\"]\n", "production.words"),
    ])
    func namedErrors(_ yaml: String, _ key: String) {
        let message = error(yaml)
        #expect(message?.hasPrefix(key) == true, "\(String(describing: message))")
    }

    @Test("invalid YAML is an error, not a crash")
    func invalidYAML() {
        let dup = error("cost: {threshold_monthly_usd: 1}\ncost: {threshold_monthly_usd: 2}\n")
        #expect(dup?.contains("duplicate") == true, "\(String(describing: dup))")
        #expect(error("a: [1, 2\n") != nil)
        #expect(error("- just\n- a list\n") != nil)
    }

    @Test("soft rules can be switched off and re-levelled; it changes decisions and the digest")
    func softRules() throws {
        let p = try Policy.load(yaml: "rules:\n  required-tags: false\napprovals:\n  open-ingress: L3\n")
        #expect(!p.isEnabled("required-tags"))
        #expect(p.approvalLevels["open-ingress"] == .l3)
        let r = EvaluationRequest(requestID: "r", userRequest: "Deploy the stack", owner: "o",
                                  plan: try Fixtures.publicPlan(Fixtures.checkovPlan), planFormat: .terraformJSON)
        let d = try PolicyEngine(policy: p).evaluate(r)
        #expect(!d.findings.contains { $0.rule == "required-tags" })
        #expect(d.findings.first { $0.rule == "open-ingress" }?.overridableBy == ["L3"])
        #expect(d.policySHA256 == p.sha256)
    }

    @Test("GDPR data outside the EU allow-list is vetoed")
    func residency() throws {
        let text = """
        {"format_version":"1.2","resource_changes":[{"address":"aws_s3_bucket.users","mode":"managed","type":"aws_s3_bucket",
        "name":"users","change":{"actions":["create"],"before":null,"after":{"bucket":"users","region":"us-east-1",
        "tags":{"Owner":"a","Environment":"dev","CostCenter":"1","DataClass":"personal"}}}}]}
        """
        let r = EvaluationRequest(requestID: "r", userRequest: "Create a bucket for user uploads", owner: "o",
                                  plan: Array(text.utf8), planFormat: .terraformJSON)
        let d = try PolicyEngine().evaluate(r)
        #expect(d.findings.contains { $0.rule == "gdpr-residency" })
        #expect(d.cannotOverride)
        var eu = r
        eu.plan = Array(text.replacingOccurrences(of: "us-east-1", with: "eu-west-1").utf8)
        #expect(try PolicyEngine().evaluate(eu).verdict == .approved)
    }
}
