/// One change a plan makes: its address and what happens to it.
public struct PlannedChange: Sendable, Hashable {
    public var address: String
    /// `create`, `update`, `delete`, `replace` or `forget`.
    public var action: String

    public init(address: String, action: String) {
        self.address = address
        self.action = action
    }

    /// The plan's changes, in plan order; no-ops and reads are left out (they change nothing).
    public static func of(_ plan: Plan) -> [PlannedChange] {
        plan.changes.compactMap { change in
            let actions = change.actions
            let action: String
            if actions.contains(.delete) && actions.contains(.create) { action = "replace" }
            else if actions.contains(.delete) { action = "delete" }
            else if actions.contains(.create) { action = "create" }
            else if actions.contains(.update) { action = "update" }
            else if actions.contains(.forget) { action = "forget" }
            else { return nil }
            return PlannedChange(address: change.address, action: action)
        }
    }
}

/// The formats of an execution report (`VerifyExecution.execution_format`).
public enum ExecutionFormat: String, Sendable, Hashable, CaseIterable {
    /// The lines of `terraform apply -json`: `apply_complete` and `apply_errored` messages carry
    /// `hook.resource.addr` and `hook.action`.
    case terraformApplyJSON = "terraform-apply-json"
    /// A JSON array of `{"address": …, "action": …}`.
    case changesJSON = "changes-json"

    /// - Throws: `PolicyError` `.unknownPlanFormat` for anything else.
    public init(wireName: String) throws {
        guard let format = ExecutionFormat(rawValue: wireName) else {
            throw PolicyError(code: .unknownPlanFormat, message: "execution_format must be \(Self.allCases.map(\.rawValue).joined(separator: " or ")), not '\(wireName)'")
        }
        self = format
    }
}

/// One change that was applied, as the executor reported it.
public struct ExecutedChange: Sendable, Hashable {
    public var address: String
    public var action: String
    /// `apply_errored`: the change was attempted and failed.
    public var failed: Bool

    public init(address: String, action: String, failed: Bool = false) {
        self.address = address
        self.action = action
        self.failed = failed
    }
}

/// A difference between what was approved and what was applied.
public struct ExecutionDeviation: Sendable, Hashable {
    public var address: String
    /// What the approved plan does there; empty when the address was not in it.
    public var expected: String
    /// What was applied; empty when the approved change did not happen.
    public var actual: String
    public var message: String

    public init(address: String, expected: String, actual: String, message: String) {
        self.address = address
        self.expected = expected
        self.actual = actual
        self.message = message
    }
}

/// Compares an execution report with the approved plan. Pure; the server signs and ledgers the
/// outcome (MATCH or DEVIATION).
public enum ExecutionCheck {
    /// Reads an execution report.
    /// - Throws: `PolicyError` when it is not valid JSON of the format, or larger than the limits.
    public static func parse(_ bytes: [UInt8], format: ExecutionFormat, limits: PlanLimits = .defaults) throws -> [ExecutedChange] {
        guard bytes.count <= limits.maxPlanBytes else {
            throw PolicyError(code: .tooLarge, message: "the execution report is \(bytes.count) bytes; the limit is \(limits.maxPlanBytes)")
        }
        switch format {
        case .changesJSON:
            let root = try JSONReader.parse(bytes, maxDepth: limits.maxDepth, what: "execution report")
            guard case .array(let items) = root else { throw PolicyError(code: .invalidPlan, message: "a changes-json report is a JSON array") }
            return try items.enumerated().map { i, item in
                guard case .object(let o) = item, case .string(let address)? = o["address"], case .string(let action)? = o["action"],
                      !address.isEmpty else {
                    throw PolicyError(code: .invalidPlan, message: "item \(i) of the report needs string fields address and action")
                }
                return ExecutedChange(address: address, action: normalise(action))
            }
        case .terraformApplyJSON:
            var out: [ExecutedChange] = []
            var lineNumber = 0
            for line in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
                lineNumber += 1
                let trimmed = line.drop { $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }
                if trimmed.isEmpty { continue }
                let message = try JSONReader.parse(Array(trimmed), maxDepth: limits.maxDepth, what: "apply log line \(lineNumber)")
                guard case .object(let o) = message, case .string(let type)? = o["type"] else {
                    throw PolicyError(code: .invalidPlan, message: "apply log line \(lineNumber) is not a terraform -json message")
                }
                guard type == "apply_complete" || type == "apply_errored" else { continue }
                guard case .object(let hook)? = o["hook"], case .object(let resource)? = hook["resource"],
                      case .string(let address)? = resource["addr"], case .string(let action)? = hook["action"] else {
                    throw PolicyError(code: .invalidPlan, message: "apply log line \(lineNumber) (\(type)) lacks hook.resource.addr or hook.action")
                }
                out.append(ExecutedChange(address: address, action: normalise(action), failed: type == "apply_errored"))
            }
            return out
        }
    }

    /// Every difference: an applied change the plan does not have, a planned change that did not
    /// happen (or failed), a different action. No deviations means MATCH.
    public static func compare(planned: [PlannedChange], executed: [ExecutedChange]) -> [ExecutionDeviation] {
        var deviations: [ExecutionDeviation] = []
        var applied: [String: [ExecutedChange]] = [:]
        for change in executed { applied[change.address, default: []].append(change) }
        var seen = Set<String>()
        for plan in planned {
            seen.insert(plan.address)
            let done = applied[plan.address] ?? []
            let actions = Set(done.filter { !$0.failed }.map(\.action))
            if done.contains(where: \.failed) {
                deviations.append(ExecutionDeviation(address: plan.address, expected: plan.action, actual: "error",
                                                     message: "the approved \(plan.action) of \(plan.address) failed"))
            } else if actions.isEmpty {
                deviations.append(ExecutionDeviation(address: plan.address, expected: plan.action, actual: "",
                                                     message: "the approved \(plan.action) of \(plan.address) did not happen"))
            } else if !matches(plan.action, actions) {
                deviations.append(ExecutionDeviation(address: plan.address, expected: plan.action, actual: actions.sorted().joined(separator: "+"),
                                                     message: "\(plan.address) was \(actions.sorted().joined(separator: "+")), the approval was for \(plan.action)"))
            }
        }
        for change in executed where !seen.contains(change.address) && change.action != "no-op" && change.action != "read" {
            seen.insert(change.address)
            deviations.append(ExecutionDeviation(address: change.address, expected: "", actual: change.action,
                                                 message: "\(change.address) was \(change.action), but the approved plan does not touch it"))
        }
        return deviations
    }

    static func matches(_ planned: String, _ actions: Set<String>) -> Bool {
        if planned == "replace" { return actions == ["replace"] || actions == ["delete", "create"] || actions == ["create", "delete"] }
        return actions == [planned]
    }

    static func normalise(_ action: String) -> String {
        switch action.lowercased() {
        case "noop", "no-op", "no_op": "no-op"
        case "create-then-delete", "delete-then-create", "create_then_delete", "delete_then_create": "replace"
        default: action.lowercased()
        }
    }
}
