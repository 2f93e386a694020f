import Foundation
import Testing
@testable import CountersignConfig

@Suite struct ConfigurationTests {
    static let pin = String(repeating: "ab", count: 32)
    static let valid = """
        node: { name: a, listen: "127.0.0.1:7443", metrics_listen: "127.0.0.1:9464" }
        tls: { certificate: pki/server.crt, private_key: /abs/server.key, client_ca: pki/ca.crt }
        principals:
          - { id: orch, role: orchestrator, spki_sha256: \(pin), owners: [a@example] }
          - { id: appr, role: approver, level: 2, spki_sha256: \(String(repeating: "cd", count: 32)) }
        token: { module: /usr/lib/softhsm/libsofthsm2.so, token_label: t, pin_file: secrets/pin }
        database:
          socket_directory: pg/run
          writer: { user: w, password_env: PGW }
        """

    @Test func parsesAndResolvesPaths() throws {
        let c = try CountersignConfiguration.parse(yaml: Self.valid, baseDirectory: "/srv/cs")
        #expect(c.node.listen == HostPort(host: "127.0.0.1", port: 7443))
        #expect(c.node.advertise == "127.0.0.1:7443")
        #expect(c.tls.certificatePath == "/srv/cs/pki/server.crt")
        #expect(c.tls.privateKeyPath == "/abs/server.key")
        #expect(c.token.pin == .file("/srv/cs/secrets/pin"))
        #expect(c.database.writer.password == .environment("PGW"))
        #expect(c.database.socketPath == "/srv/cs/pg/run/.s.PGSQL.5432")
        #expect(c.limits == .defaults)
        #expect(c.principal(pinnedBy: Self.pin)?.id == "orch")
        #expect(c.principals[1].level == 2)
    }

    @Test(arguments: [
        ("node: { name: a, listen: nope }", "node.listen"),
        ("bogus: 1", "bogus"),
        ("principals:\n  - { id: x, role: king, spki_sha256: \(pin) }", "principals[0].role"),
        ("principals:\n  - { id: x, role: auditor, spki_sha256: 1234 }", "principals[0].spki_sha256"),
        ("principals:\n  - { id: x, role: approver, spki_sha256: \(pin) }", "principals[0].level"),
        ("principals:\n  - { id: x, role: orchestrator, spki_sha256: \(pin) }", "principals[0].owners"),
        ("token: { module: /m, token_label: t }", "token.pin_file"),
        ("limits: { max_frame_bytes: -5 }", "limits.max_frame_bytes"),
        ("limits: { max_frame_bytes: 1048576, max_request_bytes_in_flight: 65536 }", "limits.max_request_bytes_in_flight"),
        ("limits: { max_findings_listed: 0 }", "limits.max_findings_listed"),
        ("alerts: { webhooks: [ { url: ftp://x } ] }", "alerts.webhooks[0].url"),
        ("alerts: { webhooks: [ { url: https://x, url_env: HOOK } ] }", "alerts.webhooks[0].url"),
        ("alerts: { webhooks: [ { events: [veto] } ] }", "alerts.webhooks[0].url_file"),
        ("alerts: { webhooks: [ { url: https://x, events: [veto, coffee] } ] }", "alerts.webhooks[0].events[1]"),
        ("alerts: { queue_capacity: 0 }", "alerts.queue_capacity"),
        ("alerts: { retries: 3 }", "alerts.retries"),
    ])
    func namesTheKeyThatIsWrong(_ override: String, _ key: String) throws {
        // Replace the top-level section the override names, keep the rest valid.
        let section = String(override.prefix { $0 != ":" })
        var lines = Self.valid.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if let start = lines.firstIndex(where: { $0.hasPrefix(section + ":") }) {
            var end = start + 1
            while end < lines.count, lines[end].hasPrefix(" ") { end += 1 }
            lines.removeSubrange(start..<end)
        }
        let yaml = (lines + [override]).joined(separator: "\n")
        let error = try #require(throws: ConfigurationError.self) {
            try CountersignConfiguration.parse(yaml: yaml, baseDirectory: "/")
        }
        #expect(error.key == key, "\(error)")
    }

    @Test func alertWebhooksParse() throws {
        let yaml = Self.valid + """

            alerts:
              queue_capacity: 50
              webhooks:
                - { url: "https://alerts.example/hook", events: [veto, deviation] }
                - { url_file: secrets/slack-hook }
            """
        let c = try CountersignConfiguration.parse(yaml: yaml, baseDirectory: "/srv/cs")
        #expect(c.alerts.queueCapacity == 50 && c.alerts.maxAttempts == AlertSettings.defaults.maxAttempts)
        #expect(c.alerts.webhooks.count == 2)
        #expect(c.alerts.webhooks[0].address == .literal("https://alerts.example/hook"))
        #expect(c.alerts.webhooks[0].events == [.veto, .deviation])
        #expect(c.alerts.webhooks[1].address == .secret(.file("/srv/cs/secrets/slack-hook")))
        #expect(c.alerts.webhooks[1].events == Set(AlertEvent.allCases))
        // A secret URL is never printed.
        #expect(!"\(c.alerts.webhooks[1].address)".contains("hooks.slack"))
        #expect(try CountersignConfiguration.parse(yaml: Self.valid, baseDirectory: "/").alerts == .defaults)
    }

    @Test func duplicatePinIsRefused() throws {
        let yaml = Self.valid.replacingOccurrences(of: String(repeating: "cd", count: 32), with: Self.pin)
        let error = try #require(throws: ConfigurationError.self) {
            try CountersignConfiguration.parse(yaml: yaml, baseDirectory: "/")
        }
        #expect(error.key == "principals[1].spki_sha256")
    }

    @Test func garbageIsAnErrorNotACrash() {
        for text in ["", "- a\n- b", ": : :", "node: [", "\u{0}\u{1}"] {
            #expect(throws: ConfigurationError.self) { try CountersignConfiguration.parse(yaml: text, baseDirectory: "/") }
        }
    }

    @Test func devConfigurationLoadsWhenPresent() throws {
        let path = ProcessInfo.processInfo.environment["COUNTERSIGN_CONFIG"]
            ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../.local/countersign.yaml").standardizedFileURL.path
        let config = try CountersignConfiguration.load(path: path)
        #expect(config.principals.contains { $0.role == .orchestrator })
        #expect(try !config.token.pin.read().isEmpty)
    }
}

@Suite struct ExampleConfigurationTests {
    @Test func theDocumentedExampleIsValid() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Deploy/countersign.example.yaml").standardizedFileURL.path
        let config = try CountersignConfiguration.load(path: path)
        #expect(config.principals.map(\.role) == [.orchestrator, .approver, .officer, .auditor])
        #expect(config.database.endpoint == .tcp(host: "db.internal", port: 5432))
        #expect(config.database.reader?.password == .environment("COUNTERSIGN_PG_READER"))
        #expect(config.policy.file == "/etc/countersign/policy.yaml")
    }
}
