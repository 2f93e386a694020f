import ArgumentParser
import CountersignClient
import CountersignVerify
import CountersignWire
import Crypto
import Foundation

/// `countersign demo`: the original design's scenarios through a running server, as an
/// orchestrator would send them, then every signature and inclusion proof checked offline.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the design's scenarios through a running server and verify the answers offline.",
        discussion: """
            For each scenario file (a VerifyPlan request and the decision it must reach) the demo submits \
            the request as the orchestrator over mutual TLS, prints the decision, and compares it with \
            the expectation. Confirmations (a deletion confirmed by name, a finance approval) must come \
            from an authenticated person through the Override service, never from the orchestrator's own \
            request: until that service exists, such a scenario is expected to stop at ESCALATE, waiting \
            for the confirmation. Then, with nothing but the public keys from ListKeys, it checks every \
            decision's DSSE signature and what the statement binds, fetches a signed checkpoint, checks \
            it, and checks every decision's inclusion proof against it. Exits 1 if anything differs.
            """)

    @OptionGroup var client: ClientOptions

    @Option(help: "Folder of scenario files (default: $COUNTERSIGN_SHARED/fixtures/scenarios, else ../shared/fixtures/scenarios beside this checkout).")
    var scenarios: String?

    struct Outcome {
        let name: String
        let request: VerifyPlanRequest
        let decision: Decision
    }

    func run() async throws {
        let folder = try scenarioFolder()
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".json") }.sorted()
        guard !files.isEmpty else { throw ValidationError("no scenario files in \(folder)") }
        let connection = try await CountersignClient.connect(try client.clientConfiguration(defaultIdentity: "orchestrator"))
        var outcomes: [Outcome] = []
        var failures: [String] = []
        for file in files {
            let scenario = try Scenario(path: "\(folder)/\(file)")
            let decision: Decision
            do {
                decision = try await connection.verifyPlan(scenario.request)
            } catch {
                failures.append("\(scenario.name): \(error)")
                print("✗ \(scenario.name): \(error)\n")
                continue
            }
            let problems = scenario.check(decision)
            print(problems.isEmpty ? "✓ \(scenario.name)" : "✗ \(scenario.name)")
            print("  asked:    \"\(scenario.request.userRequest)\" (owner \(scenario.request.owner))")
            print("  verdict:  \(decision.verdict)\(decision.cannotOverride ? " — no one can override" : "")  [ledger index \(decision.ledgerIndex)]")
            for f in decision.findings where f.enforcement != .advisory {
                print("  finding:  \(f.rule) (\(f.enforcement)) \(f.address)")
            }
            print("  summary:  \(decision.summary)")
            if let note = scenario.note { print("  note:     \(note)") }
            for p in problems { print("  PROBLEM:  \(p)") }
            print("")
            failures += problems.map { "\(scenario.name): \($0)" }
            outcomes.append(Outcome(name: scenario.name, request: scenario.request, decision: decision))
        }

        print("Verifying offline, with nothing but the published public keys:")
        failures += await verifyOffline(outcomes, connection)
        await connection.close()
        if failures.isEmpty {
            print("\nAll \(files.count) scenarios ended as expected; every signature and inclusion proof verifies.")
        } else {
            print("\n\(failures.count) problem(s):")
            for f in failures { print("  - \(f)") }
            throw ExitCode.failure
        }
    }

    func verifyOffline(_ outcomes: [Outcome], _ connection: CountersignClient) async -> [String] {
        var failures: [String] = []
        do {
            let listed: ListKeysResponse = try await connection.call(Method.auditListKeys, ListKeysRequest())
            var keys: [String: VerificationKey] = [:]
            for info in listed.keys { keys[info.keyID] = try VerificationKey(spkiDER: info.spkiDER) }
            print("  keys:        \(keys.count) listed (\(keys.keys.map { String($0.prefix(12)) }.sorted().joined(separator: ", ")))")
            for o in outcomes {
                let d = o.decision
                guard let key = keys[d.keyID] else { failures.append("\(o.name): signed by an unlisted key \(d.keyID)"); continue }
                guard key.verifies(signature: d.signature, payloadType: d.payloadType, payload: d.statement),
                      d.payloadType == PayloadType.decision else {
                    failures.append("\(o.name): the signature does not verify"); continue
                }
                let s = try DecisionStatement(protobuf: d.statement)
                if s.requestID != o.request.requestID || s.planSHA256 != Array(SHA256.hash(data: o.request.plan))
                    || s.userRequestSHA256 != Array(SHA256.hash(data: Array(o.request.userRequest.utf8)))
                    || s.owner != o.request.owner || s.verdict != d.verdict || s.keyID != d.keyID {
                    failures.append("\(o.name): the statement does not bind this request, plan, owner and verdict")
                }
            }
            print("  signatures:  \(outcomes.count) decisions verified, each binding its request id, plan, words, owner and verdict")

            // A checkpoint that covers every decision.
            let parsed: CountersignVerify.Checkpoint
            do {
                parsed = try await connection.verifiedCheckpoint(covering: outcomes.map(\.decision.ledgerIndex).max() ?? 0) { statement in
                    guard let key = keys[statement.keyID] else { throw AuditFailure("signed by an unlisted key \(statement.keyID)") }
                    try key.verify(statement)
                }.parsed
            } catch {
                return failures + ["\(error)"]
            }
            print("  checkpoint:  \(parsed.origin), tree size \(parsed.treeSize), root \(Hex.encode(parsed.rootHash).prefix(16))…, signature verified")
            for o in outcomes {
                let proof = try await connection.proveInclusion(leafIndex: o.decision.ledgerIndex, treeSize: parsed.treeSize)
                do {
                    try Merkle.verifyInclusion(leafHash: Merkle.leafHash(bytes: o.decision.statement), index: o.decision.ledgerIndex,
                                               treeSize: parsed.treeSize, proof: proof.hashes, root: parsed.rootHash)
                } catch {
                    failures.append("\(o.name): inclusion proof of index \(o.decision.ledgerIndex) fails: \(error)")
                }
            }
            print("  inclusion:   \(outcomes.count) proofs verified against the signed checkpoint")
        } catch {
            failures.append("offline verification: \(error)")
        }
        return failures
    }

    func scenarioFolder() throws -> String {
        if let scenarios { return scenarios }
        if let shared = ProcessInfo.processInfo.environment["COUNTERSIGN_SHARED"], !shared.isEmpty {
            return "\(shared)/fixtures/scenarios"
        }
        let config = URL(fileURLWithPath: try client.config.resolvedPath())
        // .local/countersign.yaml → the checkout → ../shared
        return config.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("shared/fixtures/scenarios").path
    }
}

/// One scenario file of ../shared/fixtures/scenarios.
struct Scenario {
    let name: String
    let request: VerifyPlanRequest
    let expectedVerdict: Verdict
    let expectedRules: [String]
    let expectedCannotOverride: Bool
    /// Why the expectation differs from the file's, if it does.
    let note: String?

    init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path),
              let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let req = root["request"] as? [String: Any], let expect = root["expect"] as? [String: Any],
              let plan = req["plan"] else {
            throw ValidationError("\(path) is not a scenario file")
        }
        name = root["name"] as? String ?? URL(fileURLWithPath: path).lastPathComponent
        var r = VerifyPlanRequest()
        r.requestID = "demo-" + (req["request_id"] as? String ?? name)
        r.userRequest = req["user_request"] as? String ?? ""
        r.owner = req["owner"] as? String ?? ""
        r.planFormat = req["plan_format"] as? String ?? ""
        r.plan = Array(try JSONSerialization.data(withJSONObject: plan, options: [.sortedKeys]))
        let confirmations = req["confirmations"] as? [String: Any] ?? [:]
        // A change ticket is an id the orchestrator passes along; it travels in the request.
        r.changeTicket = confirmations["change_ticket"] as? String ?? req["change_ticket"] as? String ?? ""
        request = r

        let verdict = Verdict(name: expect["verdict"] as? String ?? "") ?? .unspecified
        let rules = expect["findings"] as? [String] ?? []
        let humanConfirmations = confirmations.keys.filter { $0 != "change_ticket" }.sorted()
        if humanConfirmations.isEmpty {
            expectedVerdict = verdict
            expectedRules = rules
            note = nil
        } else {
            // Consent from a person comes only through the Override service, never in this request.
            expectedVerdict = verdict == .approved ? .escalate : verdict
            expectedRules = rules
            note = "this scenario needs \(humanConfirmations.joined(separator: ", ")) from an authenticated person (Override "
                + "service); the orchestrator cannot give it, so the plan waits at ESCALATE (the file expects \(verdict) after consent)"
        }
        expectedCannotOverride = expect["cannot_override"] as? Bool ?? false
    }

    func check(_ d: Decision) -> [String] {
        var problems: [String] = []
        if d.verdict != expectedVerdict { problems.append("verdict \(d.verdict), expected \(expectedVerdict)") }
        let rules = Set(d.findings.map(\.rule))
        for rule in expectedRules where !rules.contains(rule) { problems.append("finding \(rule) is missing") }
        if d.cannotOverride != expectedCannotOverride { problems.append("cannot_override \(d.cannotOverride), expected \(expectedCannotOverride)") }
        return problems
    }
}
