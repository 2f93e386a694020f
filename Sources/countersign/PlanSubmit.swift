import ArgumentParser
import CountersignClient
import enum CountersignPolicy.JSONText
import CountersignWire
import Foundation

/// `countersign plan submit`: what an orchestrator does — send a plan, get a signed, ledgered decision.
struct PlanSubmit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit",
        abstract: "Submit a plan to the server as an orchestrator and print the signed decision.",
        discussion: """
            Sends Audit.VerifyPlan over mutual TLS with the orchestrator's certificate (see --identity). \
            The same --request-id with the same plan, words, owner and ticket returns the stored decision \
            again; with anything different it is refused (ALREADY_EXISTS). Exit status: 0 APPROVED, \
            2 ESCALATE, 3 VETO, 1 error.
            """)

    @OptionGroup var client: ClientOptions

    @Option(help: "The plan file: `terraform show -json` output, or a change-set JSON.")
    var plan: String

    @Option(help: "The person's words, exactly as they asked.")
    var request: String

    @Option(help: "The accountable human (must be one of the owners this orchestrator may act for).")
    var owner: String

    @Option(help: "terraform-json or changeset-json.")
    var format: String = "terraform-json"

    @Option(help: "Idempotency key (default: a new random id).")
    var requestID: String?

    @Option(help: "Change ticket id, recorded as given.")
    var changeTicket: String?

    @Flag(help: "Print the decision as JSON.")
    var json = false

    func run() async throws {
        guard let bytes = FileManager.default.contents(atPath: plan) else { throw ValidationError("cannot read the plan \(plan)") }
        var request = VerifyPlanRequest()
        request.requestID = requestID ?? "req-\(UUID().uuidString.lowercased())"
        request.userRequest = self.request
        request.owner = owner
        request.plan = Array(bytes)
        request.planFormat = format
        request.changeTicket = changeTicket ?? ""
        let connection = try await CountersignClient.connect(try client.clientConfiguration(defaultIdentity: "orchestrator"))
        let decision: Decision
        do {
            decision = try await connection.verifyPlan(request)
            await connection.close()
        } catch {
            await connection.close()
            FileHandle.standardError.write(Data("countersign plan submit: \(error)\n".utf8))
            throw ExitCode.failure
        }
        if json {
            let findings = decision.findings.map { f in
                "{\"rule\":\(JSONText.quoted(f.rule)),\"enforcement\":\"\(f.enforcement)\",\"address\":\(JSONText.quoted(f.address)),\"path\":\(JSONText.quoted(f.path)),\"message\":\(JSONText.quoted(f.message))}"
            }
            print("{\"request_id\":\(JSONText.quoted(decision.requestID)),\"verdict\":\"\(decision.verdict)\",\"cannot_override\":\(decision.cannotOverride),"
                  + "\"summary\":\(JSONText.quoted(decision.summary)),\"ledger_index\":\(decision.ledgerIndex),\"key_id\":\(JSONText.quoted(decision.keyID)),"
                  + "\"findings\":[\(findings.joined(separator: ","))],\"findings_omitted\":\(decision.findingsOmitted)}")
        } else {
            print("\(decision.requestID): \(decision.verdict)\(decision.cannotOverride ? " (no one can override)" : "")")
            for f in decision.findings {
                print("  \(f.rule) [\(f.enforcement)] \(f.address)\(f.path.isEmpty ? "" : " \(f.path)")")
                print("      \(f.message)")
            }
            if decision.findingsOmitted > 0 {
                print("  … and \(decision.findingsOmitted) more findings, not listed (the summary names their rules)")
            }
            print("  \(decision.summary)")
            print("  signed by key \(decision.keyID.prefix(16))…, ledger index \(decision.ledgerIndex)")
        }
        switch decision.verdict {
        case .approved: return
        case .escalate: throw ExitCode(2)
        default: throw ExitCode(3)
        }
    }
}
