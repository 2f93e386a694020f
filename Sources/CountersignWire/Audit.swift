// Messages of countersign.v1.Audit (proto/countersign/v1/audit.proto), written by hand.
// Each encodes its fields in field-number order and skips proto3 defaults.

public struct HealthRequest: ProtoMessage {
    public static let protoName = "countersign.v1.HealthRequest"
    public init() {}
    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool { false }
    public func encode(to w: inout ProtoWriter) {}
}

public struct HealthResponse: ProtoMessage {
    public static let protoName = "countersign.v1.HealthResponse"
    public var node = ""
    /// `active` or `standby`.
    public var role = ""
    public var version = ""
    public var activeAddress = ""
    public var epoch: UInt64 = 0
    public var signerAvailable = false
    public var ledgerAvailable = false
    public var treeSize: UInt64 = 0
    /// The principal the server authenticated for this connection.
    public var principal = ""
    /// Whether the policy file is valid (when not, every decision is `UNAVAILABLE`).
    public var policyAvailable = false
    /// SHA-256 of the policy in force, lowercase hex; empty when there is none.
    public var policySHA256 = ""
    public init() {}

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: node = try r.readString(wt)
        case 2: role = try r.readString(wt)
        case 3: version = try r.readString(wt)
        case 4: activeAddress = try r.readString(wt)
        case 5: epoch = try r.readUInt64(wt)
        case 6: signerAvailable = try r.readBool(wt)
        case 7: ledgerAvailable = try r.readBool(wt)
        case 8: treeSize = try r.readUInt64(wt)
        case 9: principal = try r.readString(wt)
        case 10: policyAvailable = try r.readBool(wt)
        case 11: policySHA256 = try r.readString(wt)
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, string: node)
        w.write(2, string: role)
        w.write(3, string: version)
        w.write(4, string: activeAddress)
        w.write(5, uint64: epoch)
        w.write(6, bool: signerAvailable)
        w.write(7, bool: ledgerAvailable)
        w.write(8, uint64: treeSize)
        w.write(9, string: principal)
        w.write(10, bool: policyAvailable)
        w.write(11, string: policySHA256)
    }
}

public struct VerifyPlanRequest: ProtoMessage {
    public static let protoName = "countersign.v1.VerifyPlanRequest"
    /// Client-chosen and idempotent.
    public var requestID = ""
    /// The person's words.
    public var userRequest = ""
    /// The accountable human.
    public var owner = ""
    /// The plan bytes exactly as they will be applied.
    public var plan: [UInt8] = []
    /// `terraform-json` or `changeset-json`.
    public var planFormat = ""
    public var changeTicket = ""
    public var registeredRequestID = ""
    public var infracost: [UInt8] = []
    /// Shown to reviewers, never trusted by any rule.
    public var agentReasoning = ""
    public init() {}

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: requestID = try r.readString(wt)
        case 2: userRequest = try r.readString(wt)
        case 3: owner = try r.readString(wt)
        case 4: plan = try r.readBytes(wt)
        case 5: planFormat = try r.readString(wt)
        case 6: changeTicket = try r.readString(wt)
        case 7: registeredRequestID = try r.readString(wt)
        case 8: infracost = try r.readBytes(wt)
        case 9: agentReasoning = try r.readString(wt)
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, string: requestID)
        w.write(2, string: userRequest)
        w.write(3, string: owner)
        w.write(4, bytes: plan)
        w.write(5, string: planFormat)
        w.write(6, string: changeTicket)
        w.write(7, string: registeredRequestID)
        w.write(8, bytes: infracost)
        w.write(9, string: agentReasoning)
    }
}

public struct Finding: ProtoMessage {
    public static let protoName = "countersign.v1.Finding"
    public var rule = ""
    public var enforcement = Enforcement.unspecified
    public var address = ""
    public var path = ""
    public var message = ""
    public var before = ""
    public var after = ""
    public var remedy = ""
    public var overridableBy: [String] = []
    public init() {}

    public init(rule: String, enforcement: Enforcement, address: String = "", path: String = "", message: String = "",
                before: String = "", after: String = "", remedy: String = "", overridableBy: [String] = []) {
        self.rule = rule
        self.enforcement = enforcement
        self.address = address
        self.path = path
        self.message = message
        self.before = before
        self.after = after
        self.remedy = remedy
        self.overridableBy = overridableBy
    }

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: rule = try r.readString(wt)
        case 2: enforcement = Enforcement(rawValue: try r.readEnum(wt))
        case 3: address = try r.readString(wt)
        case 4: path = try r.readString(wt)
        case 5: message = try r.readString(wt)
        case 6: before = try r.readString(wt)
        case 7: after = try r.readString(wt)
        case 8: remedy = try r.readString(wt)
        case 9: overridableBy.append(try r.readString(wt))
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, string: rule)
        w.write(2, enum: enforcement.rawValue)
        w.write(3, string: address)
        w.write(4, string: path)
        w.write(5, string: message)
        w.write(6, string: before)
        w.write(7, string: after)
        w.write(8, string: remedy)
        w.write(9, strings: overridableBy)
    }
}

public struct Decision: ProtoMessage {
    public static let protoName = "countersign.v1.Decision"
    public var requestID = ""
    public var verdict = Verdict.unspecified
    public var findings: [Finding] = []
    public var summary = ""
    /// True exactly when a HARD finding is present.
    public var cannotOverride = false
    /// The DSSE payload: an encoded ``DecisionStatement``.
    public var statement: [UInt8] = []
    public var signature: [UInt8] = []
    public var keyID = ""
    public var ledgerIndex: UInt64 = 0
    public var payloadType = ""
    /// Findings not listed in ``findings`` (beyond the server's `limits.max_findings_listed`).
    public var findingsOmitted: UInt32 = 0
    public init() {}

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: requestID = try r.readString(wt)
        case 2: verdict = Verdict(rawValue: try r.readEnum(wt))
        case 3: findings.append(try r.readMessage(wt))
        case 4: summary = try r.readString(wt)
        case 5: cannotOverride = try r.readBool(wt)
        case 6: statement = try r.readBytes(wt)
        case 7: signature = try r.readBytes(wt)
        case 8: keyID = try r.readString(wt)
        case 9: ledgerIndex = try r.readUInt64(wt)
        case 10: payloadType = try r.readString(wt)
        case 11: findingsOmitted = try r.readUInt32(wt)
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, string: requestID)
        w.write(2, enum: verdict.rawValue)
        w.write(3, messages: findings)
        w.write(4, string: summary)
        w.write(5, bool: cannotOverride)
        w.write(6, bytes: statement)
        w.write(7, bytes: signature)
        w.write(8, string: keyID)
        w.write(9, uint64: ledgerIndex)
        w.write(10, string: payloadType)
        w.write(11, uint32: findingsOmitted)
    }
}

/// The signed payload of a decision (payload type `application/vnd.countersign.decision+protobuf`).
public struct DecisionStatement: ProtoMessage {
    public static let protoName = "countersign.v1.DecisionStatement"
    public var requestID = ""
    public var planSHA256: [UInt8] = []
    public var userRequestSHA256: [UInt8] = []
    public var policySHA256: [UInt8] = []
    public var verdict = Verdict.unspecified
    /// The orchestrator principal, from its certificate.
    public var agent = ""
    public var owner = ""
    public var keyID = ""
    public var decidedAtUnixMs: Int64 = 0
    /// The rule id of each listed finding, in the order of ``findings``.
    public var rules: [String] = []
    public var cannotOverride = false
    public var changeTicket = ""
    public var planFormat = ""
    public var revision: UInt32 = 0
    public var confirmations: [String] = []
    /// The findings, signed with the verdict (before/after values are redacted).
    public var findings: [Finding] = []
    public var summary = ""
    /// What the plan changes; `VerifyExecution` compares an execution with it.
    public var planned: [PlannedChange] = []
    /// How many findings are not listed in ``findings`` (a decision lists at most the server's
    /// `limits.max_findings_listed`, the strictest first; the verdict is over all of them).
    public var findingsOmitted: UInt32 = 0
    /// The distinct rule ids of the findings not listed, sorted.
    public var omittedRules: [String] = []
    public init() {}

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: requestID = try r.readString(wt)
        case 2: planSHA256 = try r.readBytes(wt)
        case 3: userRequestSHA256 = try r.readBytes(wt)
        case 4: policySHA256 = try r.readBytes(wt)
        case 5: verdict = Verdict(rawValue: try r.readEnum(wt))
        case 6: agent = try r.readString(wt)
        case 7: owner = try r.readString(wt)
        case 8: keyID = try r.readString(wt)
        case 9: decidedAtUnixMs = try r.readInt64(wt)
        case 10: rules.append(try r.readString(wt))
        case 11: cannotOverride = try r.readBool(wt)
        case 12: changeTicket = try r.readString(wt)
        case 13: planFormat = try r.readString(wt)
        case 14: revision = try r.readUInt32(wt)
        case 15: confirmations.append(try r.readString(wt))
        case 16: findings.append(try r.readMessage(wt))
        case 17: summary = try r.readString(wt)
        case 18: planned.append(try r.readMessage(wt))
        case 19: findingsOmitted = try r.readUInt32(wt)
        case 20: omittedRules.append(try r.readString(wt))
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, string: requestID)
        w.write(2, bytes: planSHA256)
        w.write(3, bytes: userRequestSHA256)
        w.write(4, bytes: policySHA256)
        w.write(5, enum: verdict.rawValue)
        w.write(6, string: agent)
        w.write(7, string: owner)
        w.write(8, string: keyID)
        w.write(9, int64: decidedAtUnixMs)
        w.write(10, strings: rules)
        w.write(11, bool: cannotOverride)
        w.write(12, string: changeTicket)
        w.write(13, string: planFormat)
        w.write(14, uint32: revision)
        w.write(15, strings: confirmations)
        w.write(16, messages: findings)
        w.write(17, string: summary)
        w.write(18, messages: planned)
        w.write(19, uint32: findingsOmitted)
        w.write(20, strings: omittedRules)
    }
}

/// One change an approved plan makes (`countersign.v1.PlannedChange`).
public struct PlannedChange: ProtoMessage {
    public static let protoName = "countersign.v1.PlannedChange"
    public var address = ""
    /// `create`, `update`, `delete`, `replace` or `forget`.
    public var action = ""
    public init() {}
    public init(address: String, action: String) {
        self.address = address
        self.action = action
    }

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: address = try r.readString(wt)
        case 2: action = try r.readString(wt)
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, string: address)
        w.write(2, string: action)
    }
}

public struct VerifyExecutionRequest: ProtoMessage {
    public static let protoName = "countersign.v1.VerifyExecutionRequest"
    public var requestID = ""
    public var execution: [UInt8] = []
    /// `terraform-apply-json` or `changes-json`.
    public var executionFormat = ""
    public init() {}

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: requestID = try r.readString(wt)
        case 2: execution = try r.readBytes(wt)
        case 3: executionFormat = try r.readString(wt)
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, string: requestID)
        w.write(2, bytes: execution)
        w.write(3, string: executionFormat)
    }
}

public struct Deviation: ProtoMessage {
    public static let protoName = "countersign.v1.Deviation"
    public var address = ""
    public var expectedAction = ""
    public var actualAction = ""
    public var message = ""
    public init() {}

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: address = try r.readString(wt)
        case 2: expectedAction = try r.readString(wt)
        case 3: actualAction = try r.readString(wt)
        case 4: message = try r.readString(wt)
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, string: address)
        w.write(2, string: expectedAction)
        w.write(3, string: actualAction)
        w.write(4, string: message)
    }
}

public struct ExecutionResult: ProtoMessage {
    public static let protoName = "countersign.v1.ExecutionResult"
    public var requestID = ""
    public var verdict = ExecutionVerdict.unspecified
    public var deviations: [Deviation] = []
    public var statement: [UInt8] = []
    public var signature: [UInt8] = []
    public var keyID = ""
    public var ledgerIndex: UInt64 = 0
    public var payloadType = ""
    /// Deviations not listed in ``deviations`` (beyond the server's `limits.max_findings_listed`).
    public var deviationsOmitted: UInt32 = 0
    public init() {}

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: requestID = try r.readString(wt)
        case 2: verdict = ExecutionVerdict(rawValue: try r.readEnum(wt))
        case 3: deviations.append(try r.readMessage(wt))
        case 4: statement = try r.readBytes(wt)
        case 5: signature = try r.readBytes(wt)
        case 6: keyID = try r.readString(wt)
        case 7: ledgerIndex = try r.readUInt64(wt)
        case 8: payloadType = try r.readString(wt)
        case 9: deviationsOmitted = try r.readUInt32(wt)
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, string: requestID)
        w.write(2, enum: verdict.rawValue)
        w.write(3, messages: deviations)
        w.write(4, bytes: statement)
        w.write(5, bytes: signature)
        w.write(6, string: keyID)
        w.write(7, uint64: ledgerIndex)
        w.write(8, string: payloadType)
        w.write(9, uint32: deviationsOmitted)
    }
}

/// The signed payload of an execution verdict (payload type `application/vnd.countersign.execution+protobuf`).
public struct ExecutionStatement: ProtoMessage {
    public static let protoName = "countersign.v1.ExecutionStatement"
    public var requestID = ""
    public var executionSHA256: [UInt8] = []
    public var decisionStatementSHA256: [UInt8] = []
    public var verdict = ExecutionVerdict.unspecified
    public var agent = ""
    public var owner = ""
    public var keyID = ""
    public var decidedAtUnixMs: Int64 = 0
    /// The addresses (or, for a whole-report deviation, the message) that deviate: at most the
    /// server's `limits.max_findings_listed`.
    public var deviations: [String] = []
    /// How many more deviate than are listed; the verdict is over all of them.
    public var deviationsOmitted: UInt32 = 0
    public init() {}

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: requestID = try r.readString(wt)
        case 2: executionSHA256 = try r.readBytes(wt)
        case 3: decisionStatementSHA256 = try r.readBytes(wt)
        case 4: verdict = ExecutionVerdict(rawValue: try r.readEnum(wt))
        case 5: agent = try r.readString(wt)
        case 6: owner = try r.readString(wt)
        case 7: keyID = try r.readString(wt)
        case 8: decidedAtUnixMs = try r.readInt64(wt)
        case 9: deviations.append(try r.readString(wt))
        case 10: deviationsOmitted = try r.readUInt32(wt)
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, string: requestID)
        w.write(2, bytes: executionSHA256)
        w.write(3, bytes: decisionStatementSHA256)
        w.write(4, enum: verdict.rawValue)
        w.write(5, string: agent)
        w.write(6, string: owner)
        w.write(7, string: keyID)
        w.write(8, int64: decidedAtUnixMs)
        w.write(9, strings: deviations)
        w.write(10, uint32: deviationsOmitted)
    }
}

public struct GetDecisionRequest: ProtoMessage {
    public static let protoName = "countersign.v1.GetDecisionRequest"
    public var requestID = ""
    public init() {}
    public init(requestID: String) { self.requestID = requestID }

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        guard number == 1 else { return false }
        requestID = try r.readString(wt)
        return true
    }

    public func encode(to w: inout ProtoWriter) { w.write(1, string: requestID) }
}

public struct GetCheckpointRequest: ProtoMessage {
    public static let protoName = "countersign.v1.GetCheckpointRequest"
    public init() {}
    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool { false }
    public func encode(to w: inout ProtoWriter) {}
}

public struct Checkpoint: ProtoMessage {
    public static let protoName = "countersign.v1.Checkpoint"
    /// The exact signed text, ending in a newline, no signature lines.
    public var checkpoint: [UInt8] = []
    public var treeSize: UInt64 = 0
    public var rootHash: [UInt8] = []
    public var signature: [UInt8] = []
    public var keyID = ""
    public init() {}

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: checkpoint = try r.readBytes(wt)
        case 2: treeSize = try r.readUInt64(wt)
        case 3: rootHash = try r.readBytes(wt)
        case 4: signature = try r.readBytes(wt)
        case 5: keyID = try r.readString(wt)
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, bytes: checkpoint)
        w.write(2, uint64: treeSize)
        w.write(3, bytes: rootHash)
        w.write(4, bytes: signature)
        w.write(5, string: keyID)
    }
}

public struct ProveInclusionRequest: ProtoMessage {
    public static let protoName = "countersign.v1.ProveInclusionRequest"
    public var leafIndex: UInt64 = 0
    public var treeSize: UInt64 = 0
    public init() {}
    public init(leafIndex: UInt64, treeSize: UInt64) {
        self.leafIndex = leafIndex
        self.treeSize = treeSize
    }

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: leafIndex = try r.readUInt64(wt)
        case 2: treeSize = try r.readUInt64(wt)
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, uint64: leafIndex)
        w.write(2, uint64: treeSize)
    }
}

public struct InclusionProof: ProtoMessage {
    public static let protoName = "countersign.v1.InclusionProof"
    public var leafIndex: UInt64 = 0
    public var treeSize: UInt64 = 0
    /// RFC 9162 order.
    public var hashes: [[UInt8]] = []
    public init() {}

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: leafIndex = try r.readUInt64(wt)
        case 2: treeSize = try r.readUInt64(wt)
        case 3: hashes.append(try r.readBytes(wt))
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, uint64: leafIndex)
        w.write(2, uint64: treeSize)
        w.write(3, bytesList: hashes)
    }
}

public struct ProveConsistencyRequest: ProtoMessage {
    public static let protoName = "countersign.v1.ProveConsistencyRequest"
    public var firstSize: UInt64 = 0
    public var secondSize: UInt64 = 0
    public init() {}
    public init(firstSize: UInt64, secondSize: UInt64) {
        self.firstSize = firstSize
        self.secondSize = secondSize
    }

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: firstSize = try r.readUInt64(wt)
        case 2: secondSize = try r.readUInt64(wt)
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, uint64: firstSize)
        w.write(2, uint64: secondSize)
    }
}

public struct ConsistencyProof: ProtoMessage {
    public static let protoName = "countersign.v1.ConsistencyProof"
    public var firstSize: UInt64 = 0
    public var secondSize: UInt64 = 0
    /// RFC 9162 order.
    public var hashes: [[UInt8]] = []
    public init() {}

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: firstSize = try r.readUInt64(wt)
        case 2: secondSize = try r.readUInt64(wt)
        case 3: hashes.append(try r.readBytes(wt))
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, uint64: firstSize)
        w.write(2, uint64: secondSize)
        w.write(3, bytesList: hashes)
    }
}

public struct RegisterRequestRequest: ProtoMessage {
    public static let protoName = "countersign.v1.RegisterRequestRequest"
    public var userRequest = ""
    public var owner = ""
    public init() {}

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: userRequest = try r.readString(wt)
        case 2: owner = try r.readString(wt)
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, string: userRequest)
        w.write(2, string: owner)
    }
}

public struct RegisteredRequest: ProtoMessage {
    public static let protoName = "countersign.v1.RegisteredRequest"
    public var registeredRequestID = ""
    public var userRequestSHA256: [UInt8] = []
    public var ledgerIndex: UInt64 = 0
    public init() {}

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: registeredRequestID = try r.readString(wt)
        case 2: userRequestSHA256 = try r.readBytes(wt)
        case 3: ledgerIndex = try r.readUInt64(wt)
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, string: registeredRequestID)
        w.write(2, bytes: userRequestSHA256)
        w.write(3, uint64: ledgerIndex)
    }
}

/// The signed payload of a refused attempt (payload type `application/vnd.countersign.refusal+protobuf`).
public struct RefusalStatement: ProtoMessage {
    public static let protoName = "countersign.v1.RefusalStatement"
    public var method = ""
    public var principal = ""
    public var code: UInt32 = 0
    public var reason = ""
    public var requestID = ""
    public var owner = ""
    public var atUnixMs: Int64 = 0
    public var keyID = ""
    public init() {}

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: method = try r.readString(wt)
        case 2: principal = try r.readString(wt)
        case 3: code = try r.readUInt32(wt)
        case 4: reason = try r.readString(wt)
        case 5: requestID = try r.readString(wt)
        case 6: owner = try r.readString(wt)
        case 7: atUnixMs = try r.readInt64(wt)
        case 8: keyID = try r.readString(wt)
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, string: method)
        w.write(2, string: principal)
        w.write(3, uint32: code)
        w.write(4, string: reason)
        w.write(5, string: requestID)
        w.write(6, string: owner)
        w.write(7, int64: atUnixMs)
        w.write(8, string: keyID)
    }
}
