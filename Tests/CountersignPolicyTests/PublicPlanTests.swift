import Testing
@testable import CountersignPolicy

@Suite("Public Terraform plans")
struct PublicPlanTests {
    static let files = Fixtures.jsonFiles(in: Fixtures.publicPlans)

    func evaluate(_ file: String, request: String = "Deploy the web stack", ticket: String? = nil,
                  confirmations: Confirmations = .none) throws -> Decision {
        let req = EvaluationRequest(requestID: "t", userRequest: request, owner: "o",
                                    plan: try Fixtures.publicPlan(file), planFormat: .terraformJSON, changeTicket: ticket)
        return try PolicyEngine().evaluate(req, confirmations: confirmations)
    }

    @Test("every public plan parses and evaluates", arguments: files)
    func parses(_ file: String) throws {
        let plan = try Plan.parse(try Fixtures.publicPlan(file), format: .terraformJSON)
        #expect(!plan.changes.isEmpty)
        #expect(plan.changes.allSatisfy { $0.mode == "managed" && !$0.actions.isEmpty && !$0.address.isEmpty })
        let d = try evaluate(file)
        #expect(d.cannotOverride == d.findings.contains { $0.enforcement == .hard })
    }

    @Test("the checkov plan: public unencrypted RDS, unencrypted Neptune, open SSH and HTTP")
    func checkovPlan() throws {
        let d = try evaluate(Fixtures.checkovPlan)
        func has(_ rule: String, _ address: String, _ path: String? = nil) -> Bool {
            d.findings.contains { $0.rule == rule && $0.address == address && (path == nil || $0.path == path) }
        }
        #expect(d.verdict == .veto)
        #expect(d.cannotOverride)
        #expect(has("public-database", "aws_db_instance.default", "publicly_accessible"))
        #expect(has("encryption-at-rest", "aws_db_instance.default", "storage_encrypted"))
        #expect(has("encryption-at-rest", "aws_neptune_cluster.default", "storage_encrypted"))
        // Not production (its Environment tag is "123456789123-acme-corp"): open ingress is the soft rule.
        #expect(has("open-ingress", "aws_security_group.web-node", "ingress[0].cidr_blocks[0]"))
        #expect(has("open-ingress", "aws_security_group.web-node", "ingress[1].cidr_blocks[0]"))
        #expect(!d.findings.contains { $0.rule == "prod-open-ingress" })
        // Egress to 0.0.0.0/0 is not ingress.
        #expect(!d.findings.contains { $0.address == "aws_security_group_rule.egress" && $0.rule.contains("ingress") })
        // 5 of the 6 buckets have no SSE; the logs bucket has aws:kms.
        let s3 = d.findings.filter { $0.rule == "encryption-at-rest" && $0.address.hasPrefix("aws_s3_bucket.") }.map(\.address)
        #expect(Set(s3) == ["aws_s3_bucket.data", "aws_s3_bucket.data_science", "aws_s3_bucket.financials",
                            "aws_s3_bucket.flowbucket", "aws_s3_bucket.operations"])
        // The EBS volume's encryption is unknown until apply: neither encrypted nor unencrypted.
        #expect(!has("encryption-at-rest", "aws_ebs_volume.web_host_storage"))
        #expect(has("encryption-explicit", "aws_ebs_volume.web_host_storage", "encrypted"))
        // The log-delivery bucket is logging infrastructure.
        #expect(has("audit-infrastructure", "aws_s3_bucket.logs"))
        // Secrets are flagged but never shown.
        #expect(has("plaintext-secret", "aws_db_instance.default", "password"))
        #expect(has("plaintext-secret", "aws_lambda_function.analysis_lambda"))
        for f in d.findings {
            for text in [f.message, f.before ?? "", f.after ?? ""] {
                #expect(!text.contains("Aa1234321Bb"))
                #expect(!text.contains("AKIAIOSFODNN7EXAMPLE"))
                #expect(!text.contains("wJalrXUtnFEMI"))
            }
        }
        #expect(has("required-tags", "aws_neptune_cluster.default", "tags"))
    }

    @Test("the same checkov plan called production vetoes the open security group as a hard rule")
    func checkovPlanInProduction() throws {
        let d = try evaluate(Fixtures.checkovPlan, request: "Deploy the web stack to production", ticket: "CHG-1")
        #expect(d.findings.contains { $0.rule == "prod-open-ingress" && $0.address == "aws_security_group.web-node" })
        #expect(!d.findings.contains { $0.rule == "prod-change-ticket" })
        let noTicket = try evaluate(Fixtures.checkovPlan, request: "Deploy the web stack to production")
        #expect(noTicket.findings.contains { $0.rule == "prod-change-ticket" && $0.enforcement == .confirm })
    }

    @Test("terraform-compliance SG rules: open ingress from the group and the rule resource")
    func sgRules() throws {
        let d = try evaluate("terraform-compliance_sg-rules-issue-sgr.json")
        #expect(d.findings.contains { $0.rule == "open-ingress" && $0.address == "aws_security_group.allow_tls" })
        #expect(d.findings.contains { $0.rule == "open-ingress" && $0.address == "aws_security_group_rule.allow_all" })
    }

    @Test("terraform-compliance issue 400: DB and Redshift security groups open to the world are public databases")
    func dbSecurityGroups() throws {
        let d = try evaluate("terraform-compliance_db-cache-redshift-sg-issue-400.json")
        #expect(d.findings.contains { $0.rule == "public-database" && $0.address == "aws_db_security_group.example_db" })
        #expect(d.findings.contains { $0.rule == "public-database" && $0.address == "aws_redshift_security_group.example_redshift" })
        #expect(d.findings.contains { $0.rule == "open-ingress" && $0.address == "aws_security_group_rule.example_rule_22" })
        #expect(d.verdict == .veto)
    }

    @Test("the fugue CloudTrail plan changes nothing (no-op) and so touches no audit infrastructure")
    func cloudTrailNoOp() throws {
        let d = try evaluate("fugue_cloudtrail-issue355.json")
        #expect(!d.findings.contains { $0.rule == "audit-infrastructure" })
        #expect(d.verdict == .approved)
    }

    @Test("deleting and replacing secrets needs confirmation, and the request must ask for it")
    func deletions() throws {
        let del = try evaluate("bridgecrewio_checkov-plan-with-pure-deleted-resources.json", request: "Delete the old secret")
        #expect(del.findings.map(\.rule) == ["deletion-confirmation"])
        #expect(del.verdict == .escalate)
        let confirmed = try evaluate("bridgecrewio_checkov-plan-with-pure-deleted-resources.json", request: "Delete the old secret",
                                     confirmations: Confirmations(deletionConfirmed: ["aws_secretsmanager_secret.deleted"]))
        #expect(confirmed.verdict == .approved)
        let unasked = try evaluate("bridgecrewio_checkov-plan-with-pure-deleted-resources.json", request: "Tag the secret")
        #expect(unasked.findings.contains { $0.rule == "intent-action" })
        let replace = try evaluate("bridgecrewio_checkov-plan-with-deleted-resources.json", request: "Rotate the secret")
        #expect(replace.findings.contains { $0.rule == "deletion-confirmation" && $0.message.contains("replaced") })
        #expect(!replace.findings.contains { $0.rule == "intent-action" })
    }

    @Test("module addresses are kept; the 239 KB plan's module changes are read")
    func modules() throws {
        let plan = try Plan.parse(try Fixtures.publicPlan("terraform-compliance_sg-alb-asg-issue-249.json"), format: .terraformJSON)
        let nested = try #require(plan.changes.first { $0.address == "module.myapp-asg.module.iam.aws_iam_role.role" })
        #expect(nested.module == "module.myapp-asg.module.iam")
        #expect(nested.actions == [.noOp])
        #expect(plan.changes.filter(\.isChange).count == 6)
    }
}
