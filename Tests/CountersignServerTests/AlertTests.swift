import CountersignClient
import CountersignConfig
import CountersignLedger
import CountersignPolicy
@testable import CountersignServer
import CountersignTestSupport
import CountersignWire
import Foundation
import Testing
@testable import countersign

/// Alert webhooks against a fake receiver (an outside system), and the policy file going bad.
@Suite(.serialized) struct AlertTests {
    static func alerter(_ receiver: WebhookReceiver, capacity: Int = 1000, attempts: Int = 4, timeoutMs: Int = 2000,
                        events: Set<AlertEvent> = Set(AlertEvent.allCases)) -> Alerter {
        Alerter(settings: AlertSettings(webhooks: [Webhook(address: .literal(receiver.url), events: events)],
                                        queueCapacity: capacity, maxAttempts: attempts, initialBackoffMs: 10, timeoutMs: timeoutMs),
                node: "test-node", logger: TestEnvironment.logger)
    }

    /// Runs `alerter` while `body` runs.
    static func running<T>(_ alerter: Alerter, _ body: () async throws -> T) async throws -> T {
        let task = Task { try await alerter.run() }
        defer { task.cancel() }
        return try await body()
    }

    @Test func aVetoAndADeviationReachTheWebhookAsJSONWithSlackText() async throws {
        let receiver = try await WebhookReceiver()
        let alerter = Self.alerter(receiver)
        try await Self.running(alerter) {
            try await DecisionStack.with(alerts: alerter) { stack in
                let client = try await stack.server.client("orchestrator")
                let scenarios = try DecisionServiceTests.scenarios()
                let vetoed = try #require(scenarios.first { $0.name.contains("public-unencrypted") })
                let veto = try await client.verifyPlan(vetoed.request)
                #expect(veto.verdict == .veto)
                let first = try #require(await receiver.wait(for: 1).first)
                #expect(first.method == "POST" && first.contentType == "application/json")
                let json = first.json
                #expect(json["event"] as? String == "veto")
                #expect(json["node"] as? String == "test-node")
                let text = try #require(json["text"] as? String)
                #expect(text.hasPrefix("[test-node] VETO of \(vetoed.request.requestID)"), "\(text)")
                let details = try #require(json["details"] as? [String: String])
                #expect(details["request_id"] == vetoed.request.requestID)
                #expect(details["ledger_index"] == "\(veto.ledgerIndex)")
                #expect(details["agent"] == "orchestrator")

                // An approval raises nothing; a deviation from it does.
                let quarantine = try #require(scenarios.first { $0.name.contains("quarantine") })
                #expect(try await client.verifyPlan(quarantine.request).verdict == .approved)
                var report = VerifyExecutionRequest()
                report.requestID = quarantine.request.requestID
                report.execution = Array(#"[{"address":"aws_instance.web","action":"delete"}]"#.utf8)
                report.executionFormat = "changes-json"
                let result: ExecutionResult = try await client.call(Method.verifyExecution, report)
                #expect(result.verdict == .deviation)
                let all = await receiver.wait(for: 2)
                #expect(all.count == 2)
                #expect(all.last?.json["event"] as? String == "deviation")
                #expect((all.last?.json["text"] as? String)?.contains("aws_instance.web") == true)
                await client.close()
            }
        }
        await receiver.stop()
    }

    @Test func transientFailuresAreRetriedAndRefusalsAreNot() async throws {
        let flaky = try await WebhookReceiver(.script([500, 503, 429]))
        let retrying = Self.alerter(flaky)
        try await Self.running(retrying) {
            retrying.post(Alert(.hsmFault, "token gone"))
            let got = await flaky.wait(for: 1)
            #expect(got.count == 1 && flaky.requests == 4)
        }
        await flaky.stop()

        let refusing = try await WebhookReceiver(.script([400]))
        let alerter = Self.alerter(refusing)
        try await Self.running(alerter) {
            alerter.post(Alert(.veto, "one"))
            alerter.post(Alert(.veto, "two"))
            _ = await refusing.wait(for: 1)
            try await Task.sleep(for: .milliseconds(300))  // ten times the longest first backoff
            #expect(refusing.received.count == 1)
            #expect(refusing.requests == 2, "a 400 is not retried")
        }
        await refusing.stop()
    }

    @Test func onlySubscribedEventsAreSent() async throws {
        let receiver = try await WebhookReceiver()
        let alerter = Self.alerter(receiver, events: [.deviation])
        try await Self.running(alerter) {
            alerter.post(Alert(.veto, "not for this hook"))
            alerter.post(Alert(.deviation, "for this hook"))
            let got = await receiver.wait(for: 1)
            try await Task.sleep(for: .milliseconds(200))
            #expect(got.count == 1 && receiver.requests == 1)
            #expect(got.first?.json["event"] as? String == "deviation")
        }
        await receiver.stop()
    }

    /// A receiver that never answers fills the queue; decisions go on, alerts beyond the queue are
    /// dropped rather than waited for.
    @Test func aDeadReceiverNeverHoldsUpADecision() async throws {
        let dead = try await WebhookReceiver(.hang)
        let alerter = Self.alerter(dead, capacity: 4, attempts: 1, timeoutMs: 60_000)
        try await Self.running(alerter) {
            for i in 0..<1000 { alerter.post(Alert(.veto, "flood \(i)")) }
            try await DecisionStack.with(alerts: alerter) { stack in
                let client = try await stack.server.client("orchestrator")
                let scenarios = try DecisionServiceTests.scenarios()
                for scenario in scenarios.filter({ $0.name.contains("public-unencrypted") || $0.name.contains("honest") }) {
                    let decision = try await client.verifyPlan(scenario.request)
                    #expect(try await stack.ledger.entry(at: decision.ledgerIndex).statement.payload == decision.statement)
                }
                await client.close()
            }
            // At most the deliveries in flight plus the queue ever reached the receiver.
            #expect(dead.requests <= Alerter.maxInFlight + 4 + 2)
        }
        await dead.stop()
    }

    /// An invalid policy file never stops the node and never falls back to another policy: every
    /// decision is UNAVAILABLE (and nothing is ledgered) until the file is valid again.
    @Test func anInvalidPolicyFileMakesEveryDecisionUnavailableUntilFixed() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cs-policy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("policy.yaml").path
        let valid = try String(contentsOfFile: "\(TestEnvironment.root)/policy/default.yaml", encoding: .utf8)
        try valid.write(toFile: file, atomically: true, encoding: .utf8)

        let receiver = try await WebhookReceiver()
        let alerter = Self.alerter(receiver)
        let policy = PolicySource(settings: PolicySettings(file: file), logger: TestEnvironment.logger, alerts: alerter,
                                  pollInterval: .milliseconds(20))
        let watch = Task { try await policy.run() }
        defer { watch.cancel() }
        try await Self.running(alerter) {
            try await DecisionStack.with(policy: policy, alerts: alerter) { stack in
                let client = try await stack.server.client("orchestrator")
                var request = try #require(try DecisionServiceTests.scenarios().first { $0.name.contains("honest") }).request
                request.requestID = "policy-ok"
                #expect(try await client.verifyPlan(request).verdict == .approved)

                var lastReason = ""
                for broken in ["rules: [", "version: 99\n", "\u{0}\u{1}garbage"] {
                    try broken.write(toFile: file, atomically: true, encoding: .utf8)
                    try await Self.until {
                        guard case .invalid(let reason) = policy.state, reason != lastReason else { return false }
                        lastReason = reason
                        return true
                    }
                    let size = try await stack.ledger.size()
                    request.requestID = "policy-broken-\(broken.count)"
                    let error = await #expect(throws: Status.self) { _ = try await client.verifyPlan(request) }
                    #expect(error?.code == .unavailable)
                    #expect(error?.message.contains("no valid policy") == true, "\(String(describing: error))")
                    #expect(try await stack.ledger.size() == size, "nothing is ledgered without a policy")
                }
                try FileManager.default.removeItem(atPath: file)
                try await Self.until { if case .invalid(let r) = policy.state { r.contains("cannot read") } else { false } }

                try valid.write(toFile: file, atomically: true, encoding: .utf8)
                try await Self.until { if case .loaded = policy.state { true } else { false } }
                request.requestID = "policy-fixed"
                #expect(try await client.verifyPlan(request).verdict == .approved)
                await client.close()
            }
            let events = await receiver.wait(for: 5).compactMap { $0.json["text"] as? String }
            #expect(events.filter { $0.contains("policy file is not valid") }.count == 4)
            #expect(events.contains { $0.contains("valid again") })
        }
        await receiver.stop()
    }

    static func until(_ condition: () -> Bool, timeout: Duration = .seconds(5)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            guard ContinuousClock.now < deadline else { throw Status(.deadlineExceeded, "condition not met in time") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}
