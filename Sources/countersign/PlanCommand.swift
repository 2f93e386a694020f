import ArgumentParser
import CountersignPolicy
import CountersignVerify
import Foundation

/// `countersign plan …`: work with plans.
struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Check infrastructure plans against a request and the policy.",
        subcommands: [PlanCheck.self, PlanSubmit.self, PlanBench.self, PlanCorpus.self]
    )
}

/// `countersign plan check`: the policy engine, offline (like `conftest test`).
struct PlanCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check a plan offline against a request and the policy; no server, no signature.",
        discussion: """
            Reads a plan, compares it with what the person asked for and with the policy, and prints \
            the decision the server would make: APPROVED, ESCALATE or VETO, a table of findings \
            (rule, enforcement, resource address, attribute) and a plain-language summary.

            Make the plan with:
              terraform plan -out tf.plan && terraform show -json tf.plan > plan.json

            Examples:
              countersign plan check --plan plan.json \\
                  --request "Deploy a Postgres database for analytics"
              countersign plan check --plan cleanup.json \\
                  --format changeset-json \\
                  --request "Clean up old dev environments" \\
                  --confirm-deletion dev-old-vpc-1
              countersign plan check --plan plan.json \\
                  --request "Scale up production" --change-ticket CHG-42 \\
                  --infracost infracost.json --finance-approved --json

            Enforcements: HARD (veto; no one can override), INTENT (veto; an approver can \
            override), CONFIRM (escalates until a person confirms: change ticket, deletion by name, \
            finance approval), SOFT (escalates; an approver of the rule's level can override), \
            ADVISORY (a note).

            Confirmations given here (--confirm-deletion, --finance-approved) stand for the person \
            running this command. The server never takes them from an orchestrator: there they come \
            only from authenticated people through the Override service.

            Exit status: 0 APPROVED, 2 ESCALATE, 3 VETO, 1 error (unreadable plan or policy, bad \
            option values). Errors in the command line itself (an unknown option) exit 64.
            """
    )

    @Option(name: .long, help: ArgumentHelp("The plan file.", valueName: "file"))
    var plan: String?

    @Option(name: .long, help: ArgumentHelp("The person's request, in their own words.", valueName: "text"))
    var request: String?

    @Option(name: .long, help: ArgumentHelp("The accountable person (default: $USER).", valueName: "who"))
    var owner: String?

    @Option(name: .long, help: ArgumentHelp("Plan format: terraform-json or changeset-json.", valueName: "format"))
    var format: String = "terraform-json"

    @Option(name: .long, help: ArgumentHelp("An Infracost `breakdown --format json` file for the cost increase.", valueName: "file"))
    var infracost: String?

    @Option(name: .long, help: ArgumentHelp("The change ticket id (needed for production changes).", valueName: "id"))
    var changeTicket: String?

    @Option(name: .long, help: ArgumentHelp("Confirm the deletion or replacement of this exact address (repeat for each).", valueName: "address"))
    var confirmDeletion: [String] = []

    @Flag(name: .long, help: "Finance approves the cost increase.")
    var financeApproved = false

    @Option(name: .long, help: ArgumentHelp("A policy file (YAML); default: the built-in policy (policy/default.yaml).", valueName: "file"))
    var policy: String?

    @Flag(name: .long, help: "Print the decision as JSON.")
    var json = false

    func run() throws {
        do {
            let decision = try evaluate()
            print(json ? PlanCheck.jsonText(decision) : PlanCheck.report(decision))
            if decision.verdict != .approved { throw ExitCode(decision.verdict.exitCode) }
        } catch let e as PlanCheckFailure {
            FileHandle.standardError.write(Data("error: \(e.message)\n".utf8))
            throw ExitCode(1)
        } catch let e as PolicyError {
            FileHandle.standardError.write(Data("error: \(e.message) [\(e.code)]\n".utf8))
            throw ExitCode(1)
        }
    }

    struct PlanCheckFailure: Error { var message: String }

    func evaluate() throws -> Decision {
        guard let plan, !plan.isEmpty else { throw PlanCheckFailure(message: "--plan FILE is required") }
        guard let request else { throw PlanCheckFailure(message: "--request TEXT is required (the person's own words)") }
        let planFormat = try PlanFormat(wireName: format)
        func read(_ path: String, _ what: String) throws -> [UInt8] {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw PlanCheckFailure(message: "cannot read the \(what) \(path)")
            }
            return Array(data)
        }
        var effective = Policy.defaults
        if let policy {
            let bytes = try read(policy, "policy file")
            guard let text = String(validating: bytes, as: UTF8.self) else {
                throw PlanCheckFailure(message: "the policy file \(policy) is not UTF-8")
            }
            effective = try Policy.load(yaml: text)
        }
        let req = EvaluationRequest(
            requestID: "plan-check", userRequest: request,
            owner: owner ?? ProcessInfo.processInfo.environment["USER"] ?? "unknown",
            plan: try read(plan, "plan"), planFormat: planFormat, changeTicket: changeTicket,
            infracost: try infracost.map { try read($0, "Infracost file") })
        let confirmations = Confirmations(deletionConfirmed: Set(confirmDeletion), financeApproved: financeApproved)
        return try PolicyEngine(policy: effective).evaluate(req, confirmations: confirmations)
    }

    static func report(_ d: Decision) -> String {
        var out = ""
        let headline: String
        switch d.verdict {
        case .approved: headline = "APPROVED"
        case .escalate: headline = "ESCALATE (a person must act)"
        case .veto: headline = d.cannotOverride ? "VETO (no one can override)" : "VETO (an approver can override)"
        }
        out += "Verdict: \(headline)\n"
        out += "Policy:  sha256:\(Hex.encode(d.policySHA256))\n"
        out += "Plan:    sha256:\(Hex.encode(d.planSHA256))\n\n"
        if d.findings.isEmpty {
            out += "No findings.\n"
        } else {
            let rows = [["RULE", "ENFORCEMENT", "ADDRESS", "ATTRIBUTE"]] + d.findings.map {
                [$0.rule, $0.enforcement.rawValue, $0.address.isEmpty ? "(plan)" : $0.address, $0.path.isEmpty ? "-" : $0.path]
            }
            let widths = (0..<4).map { i in min(60, rows.map { $0[i].count }.max() ?? 0) }
            for (n, row) in rows.enumerated() {
                out += row.enumerated().map { i, cell in
                    i == 3 ? cell : cell.padding(toLength: max(widths[i], cell.count), withPad: " ", startingAt: 0)
                }.joined(separator: "  ") + "\n"
                if n > 0 {
                    let f = d.findings[n - 1]
                    out += "    \(f.message)\n"
                    if f.before != nil || f.after != nil {
                        out += "    before: \(f.before ?? "-")  after: \(f.after ?? "-")\n"
                    }
                    var fix = "    to satisfy: \(f.remedy)"
                    if !f.overridableBy.isEmpty { fix += "; override by: \(f.overridableBy.joined(separator: ", "))" }
                    out += fix + "\n"
                }
            }
        }
        out += "\nSummary: \(d.summary)"
        return out
    }

    static func jsonText(_ d: Decision) -> String {
        let findings = d.findings.map { f in
            "{\"rule\":\(JSONText.quoted(f.rule)),\"enforcement\":\(JSONText.quoted(f.enforcement.rawValue)),\"address\":\(JSONText.quoted(f.address)),\"path\":\(JSONText.quoted(f.path)),\"message\":\(JSONText.quoted(f.message))}"
        }
        return "{\"verdict\":\(JSONText.quoted(d.verdict.rawValue)),\"cannot_override\":\(d.cannotOverride),\"summary\":\(JSONText.quoted(d.summary)),\"findings\":[\(findings.joined(separator: ","))]}"
    }
}
