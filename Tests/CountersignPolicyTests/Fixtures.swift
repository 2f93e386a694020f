import Foundation
@testable import CountersignPolicy

/// Locates ../shared: $COUNTERSIGN_SHARED, else <repo>/../shared (the repo found from #filePath).
enum Fixtures {
    static let repoRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static let shared: URL = {
        if let env = ProcessInfo.processInfo.environment["COUNTERSIGN_SHARED"], !env.isEmpty {
            return URL(fileURLWithPath: env)
        }
        return repoRoot.deletingLastPathComponent().appendingPathComponent("shared")
    }()

    static var scenarios: URL { shared.appendingPathComponent("fixtures/scenarios") }
    static var publicPlans: URL { shared.appendingPathComponent("fixtures/terraform/public") }

    static func jsonFiles(in dir: URL) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.filter { $0.hasSuffix(".json") }.sorted()
    }

    static func bytes(_ url: URL) throws -> [UInt8] { Array(try Data(contentsOf: url)) }

    static func publicPlan(_ name: String) throws -> [UInt8] { try bytes(publicPlans.appendingPathComponent(name)) }

    static let checkovPlan = "bridgecrewio_checkov-tfplan-rds-sg-mixed.json"
}

/// One scenario file, read with the engine's own strict reader.
struct Scenario {
    var name: String
    var request: EvaluationRequest
    var confirmations: Confirmations
    var expectedVerdict: Verdict
    var expectedFindings: [String]
    var expectedCannotOverride: Bool
    /// The plan as a JSON value, for tests that modify it.
    var planValue: JSONValue

    init(file: String) throws {
        let root = try JSONReader.parse(try Fixtures.bytes(Fixtures.scenarios.appendingPathComponent(file)), maxDepth: 128)
        let req = try #require(root["request"])
        name = root["name"]?.string ?? file
        let plan = try #require(req["plan"])
        planValue = plan
        let conf = req["confirmations"]?.object ?? [:]
        confirmations = Confirmations(
            deletionConfirmed: Set((conf["deletion_confirmed"]?.array ?? []).compactMap(\.string)),
            financeApproved: conf["finance_approved"]?.bool ?? false,
            securityReviewed: conf["security_reviewed"]?.bool ?? false)
        let ticket = conf["change_ticket"]?.string ?? req["change_ticket"]?.string
        request = EvaluationRequest(
            requestID: req["request_id"]?.string ?? "", userRequest: req["user_request"]?.string ?? "",
            owner: req["owner"]?.string ?? "", plan: Array(plan.compactText.utf8),
            planFormat: try PlanFormat(wireName: req["plan_format"]?.string ?? ""), changeTicket: ticket)
        let expect = try #require(root["expect"])
        expectedVerdict = try #require(Verdict(rawValue: expect["verdict"]?.string ?? ""))
        expectedFindings = (expect["findings"]?.array ?? []).compactMap(\.string)
        expectedCannotOverride = expect["cannot_override"]?.bool ?? false
    }
}

import Testing
