/// A frame's payload (`countersign.v1.Envelope`): a request naming a method, or a reply echoing
/// the request's `callID` with a ``Status``.
public struct Envelope: ProtoMessage {
    public static let protoName = "countersign.v1.Envelope"
    /// Chosen by the client, echoed in the reply; many calls may be in flight on one connection.
    public var callID: UInt64 = 0
    /// Such as `/countersign.v1.Audit/VerifyPlan` (see ``Method``).
    public var method: String = ""
    /// The request or reply message, protobuf-encoded.
    public var body: [UInt8] = []
    /// Replies only.
    public var status: Status?
    /// Requests only; 0 means the server's default.
    public var deadlineMs: UInt32 = 0

    public init() {}

    public init(callID: UInt64, method: String = "", body: [UInt8] = [], status: Status? = nil, deadlineMs: UInt32 = 0) {
        self.callID = callID
        self.method = method
        self.body = body
        self.status = status
        self.deadlineMs = deadlineMs
    }

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: callID = try r.readUInt64(wt)
        case 2: method = try r.readString(wt)
        case 3: body = try r.readBytes(wt)
        case 4: try r.mergeMessage(wt, into: &status)
        case 5: deadlineMs = try r.readUInt32(wt)
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, uint64: callID)
        w.write(2, string: method)
        w.write(3, bytes: body)
        w.write(4, message: status)
        w.write(5, uint32: deadlineMs)
    }
}

/// The outcome of a call (`countersign.v1.Status`), with gRPC status codes.
public struct Status: ProtoMessage, Error {
    public static let protoName = "countersign.v1.Status"
    public var code: StatusCode = .ok
    public var message: String = ""
    /// Set by a standby: `host:port` of the active node.
    public var activeAddress: String = ""

    public init() {}

    /// - Parameter message: cut to ``maxMessageBytes`` (on a character boundary, ending in "…"):
    ///   a message that quotes a client's input must not make a reply larger than the input.
    public init(_ code: StatusCode, _ message: String = "", activeAddress: String = "") {
        self.code = code
        self.message = Status.bounded(message)
        self.activeAddress = activeAddress
    }

    /// Longest message a status made here carries, in UTF-8 bytes.
    public static let maxMessageBytes = 4096

    static func bounded(_ message: String) -> String {
        guard message.utf8.count > maxMessageBytes else { return message }
        var cut = ""
        var bytes = 0
        let budget = maxMessageBytes - 3  // "…" is three bytes
        for c in message {
            let n = c.utf8.count
            if bytes + n > budget { break }
            cut.append(c)
            bytes += n
        }
        return cut + "…"
    }

    public static let ok = Status(.ok)

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: code = StatusCode(rawValue: try r.readUInt32(wt))
        case 2: message = try r.readString(wt)
        case 3: activeAddress = try r.readString(wt)
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, uint32: code.rawValue)
        w.write(2, string: message)
        w.write(3, string: activeAddress)
    }
}

extension Status: CustomStringConvertible {
    public var description: String {
        var text = message.isEmpty ? "\(code)" : "\(code): \(message)"
        if !activeAddress.isEmpty { text += " (active node: \(activeAddress))" }
        return text
    }
}

/// gRPC status codes. Open: an unknown code keeps its number.
public struct StatusCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let ok = StatusCode(rawValue: 0)
    public static let cancelled = StatusCode(rawValue: 1)
    public static let unknown = StatusCode(rawValue: 2)
    public static let invalidArgument = StatusCode(rawValue: 3)
    public static let deadlineExceeded = StatusCode(rawValue: 4)
    public static let notFound = StatusCode(rawValue: 5)
    public static let alreadyExists = StatusCode(rawValue: 6)
    public static let permissionDenied = StatusCode(rawValue: 7)
    public static let resourceExhausted = StatusCode(rawValue: 8)
    public static let failedPrecondition = StatusCode(rawValue: 9)
    public static let aborted = StatusCode(rawValue: 10)
    public static let outOfRange = StatusCode(rawValue: 11)
    public static let unimplemented = StatusCode(rawValue: 12)
    public static let `internal` = StatusCode(rawValue: 13)
    public static let unavailable = StatusCode(rawValue: 14)
    public static let dataLoss = StatusCode(rawValue: 15)
    public static let unauthenticated = StatusCode(rawValue: 16)

    private static let names = [
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
        "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
        "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
    ]

    public var description: String {
        rawValue < Self.names.count ? Self.names[Int(rawValue)] : "CODE_\(rawValue)"
    }
}

/// The method names of the protocol (fixed by DESIGN.md).
public enum Method {
    public static let health = "/countersign.v1.Audit/Health"
    public static let verifyPlan = "/countersign.v1.Audit/VerifyPlan"
    public static let verifyExecution = "/countersign.v1.Audit/VerifyExecution"
    public static let getDecision = "/countersign.v1.Audit/GetDecision"
    public static let getCheckpoint = "/countersign.v1.Audit/GetCheckpoint"
    public static let proveInclusion = "/countersign.v1.Audit/ProveInclusion"
    public static let proveConsistency = "/countersign.v1.Audit/ProveConsistency"
    public static let auditListKeys = "/countersign.v1.Audit/ListKeys"
    public static let registerRequest = "/countersign.v1.Audit/RegisterRequest"
    public static let requestOverride = "/countersign.v1.Override/RequestOverride"
    public static let approveOverride = "/countersign.v1.Override/Approve"
    public static let denyOverride = "/countersign.v1.Override/Deny"
    public static let getOverride = "/countersign.v1.Override/GetOverride"
    public static let proposeRotation = "/countersign.v1.Custody/ProposeRotation"
    public static let approveRotation = "/countersign.v1.Custody/ApproveRotation"
    public static let custodyListKeys = "/countersign.v1.Custody/ListKeys"
}
