import CountersignWire
import Foundation
import Testing

/// The golden vectors of scripts/gen-golden-vectors: bytes made by protoc-generated Python code.
/// Swift must decode `input` to the case's values and encode those values to `canonical`.
struct GoldenCase: Sendable, CustomTestStringConvertible {
    let name: String
    let type: String
    let values: [String: JSONValue]
    let input: [UInt8]
    let canonical: [UInt8]
    var testDescription: String { name }

    private struct File: Decodable {
        struct Case: Decodable {
            let name: String
            let type: String
            let values: [String: JSONValue]
            let input: String
            let canonical: String
        }
        let cases: [Case]
    }

    static func all() throws -> [GoldenCase] {
        guard let url = Bundle.module.url(forResource: "golden", withExtension: "json", subdirectory: "Vectors") else {
            throw JSONBuildError.badValue("Vectors/golden.json is missing: run scripts/gen-golden-vectors")
        }
        let file = try JSONDecoder().decode(File.self, from: Data(contentsOf: url))
        return try file.cases.map { c in
            guard let input = Hex.decode(c.input), let canonical = Hex.decode(c.canonical) else {
                throw JSONBuildError.badValue("hex of \(c.name)")
            }
            return GoldenCase(name: c.name, type: c.type, values: c.values, input: input, canonical: canonical)
        }
    }
}

@Suite struct GoldenVectorTests {
    @Test(arguments: try GoldenCase.all())
    func decodesAndEncodesLikeProtoc(_ golden: GoldenCase) throws {
        switch golden.type {
        case CodecTest.protoName: try check(golden, try JSONBuild.codecTest(golden.values))
        case Envelope.protoName: try check(golden, try JSONBuild.envelope(golden.values))
        case VerifyPlanRequest.protoName: try check(golden, try JSONBuild.verifyPlanRequest(golden.values))
        case Decision.protoName: try check(golden, try JSONBuild.decision(golden.values))
        case DecisionStatement.protoName: try check(golden, try JSONBuild.decisionStatement(golden.values))
        case HealthResponse.protoName: try check(golden, try JSONBuild.healthResponse(golden.values))
        case InclusionProof.protoName: try check(golden, try JSONBuild.inclusionProof(golden.values))
        default: Issue.record("no Swift builder for \(golden.type)")
        }
    }

    @Test func thereAreVectorsOfEveryKind() throws {
        let names = Set(try GoldenCase.all().map(\.name))
        for expected in ["max", "min-negative", "empty", "nested", "unknown-fields", "packed-unpacked-swapped", "decision"] {
            #expect(names.contains(expected), "missing vector \(expected)")
        }
    }

    private func check<M: ProtoMessage>(_ golden: GoldenCase, _ expected: M) throws {
        let decoded = try M(protobuf: golden.input)
        #expect(decoded == expected, "decoding \(golden.name)")
        #expect(Hex.encode(expected.protobufBytes()) == Hex.encode(golden.canonical), "encoding \(golden.name)")
        // And what we encode, we decode to the same value.
        #expect(try M(protobuf: expected.protobufBytes()) == expected)
    }
}

/// A JSON value from the vectors file (protobuf's JSON mapping).
enum JSONValue: Sendable, Decodable {
    case number(Double, String)
    case string(String)
    case bool(Bool)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self), d == 0, d.sign == .minus { self = .number(d, "-0") }  // keep -0.0
        else if let u = try? c.decode(UInt64.self) { self = .number(Double(u), String(u)) }
        else if let i = try? c.decode(Int64.self) { self = .number(Double(i), String(i)) }
        else if let d = try? c.decode(Double.self) { self = .number(d, String(d)) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }
}

enum JSONBuildError: Error { case badValue(String) }

/// Builds Swift messages from protobuf JSON values (the inverse of json_format.MessageToDict).
enum JSONBuild {
    typealias Object = [String: JSONValue]

    static func int<T: FixedWidthInteger>(_ v: JSONValue?) throws -> T {
        switch v {
        case nil: return 0
        case .number(_, let text)?, .string(let text)?:
            guard let value = T(text) else { throw JSONBuildError.badValue(text) }
            return value
        default: throw JSONBuildError.badValue("\(String(describing: v))")
        }
    }
    static func double(_ v: JSONValue?) throws -> Double {
        switch v {
        case nil: return 0
        case .number(let d, _)?: return d
        case .string(let s)?:
            switch s {
            case "NaN": return .nan
            case "Infinity": return .infinity
            case "-Infinity": return -.infinity
            default: guard let d = Double(s) else { throw JSONBuildError.badValue(s) }; return d
            }
        default: throw JSONBuildError.badValue("\(String(describing: v))")
        }
    }
    static func string(_ v: JSONValue?) throws -> String {
        guard let v else { return "" }
        guard case .string(let s) = v else { throw JSONBuildError.badValue("\(v)") }
        return s
    }
    static func bytes(_ v: JSONValue?) throws -> [UInt8] {
        let s = try string(v)
        guard let data = Data(base64Encoded: s) else { throw JSONBuildError.badValue(s) }
        return Array(data)
    }
    static func bool(_ v: JSONValue?) throws -> Bool {
        guard let v else { return false }
        guard case .bool(let b) = v else { throw JSONBuildError.badValue("\(v)") }
        return b
    }
    static func array(_ v: JSONValue?) throws -> [JSONValue] {
        guard let v else { return [] }
        guard case .array(let a) = v else { throw JSONBuildError.badValue("\(v)") }
        return a
    }
    static func object(_ v: JSONValue?) throws -> Object? {
        guard let v else { return nil }
        guard case .object(let o) = v else { throw JSONBuildError.badValue("\(v)") }
        return o
    }
    static func enumValue<E: ProtoEnum>(_ v: JSONValue?, prefix: String) throws -> E {
        switch v {
        case nil: return E(rawValue: 0)
        case .string(let name)?:
            guard let e = E(name: String(name.dropFirst(prefix.count))) else { throw JSONBuildError.badValue(name) }
            return e
        default: return E(rawValue: try int(v))
        }
    }

    static func inner(_ o: Object) throws -> Inner {
        var m = Inner()
        m.name = try string(o["name"])
        m.value = try int(o["value"])
        if let child = try object(o["child"]) { m.child = Box(try inner(child)) }
        return m
    }

    static func codecTest(_ o: Object) throws -> CodecTest {
        var m = CodecTest()
        m.fInt32 = try int(o["f_int32"]); m.fInt64 = try int(o["f_int64"])
        m.fUInt32 = try int(o["f_uint32"]); m.fUInt64 = try int(o["f_uint64"])
        m.fSInt32 = try int(o["f_sint32"]); m.fSInt64 = try int(o["f_sint64"])
        m.fFixed32 = try int(o["f_fixed32"]); m.fFixed64 = try int(o["f_fixed64"])
        m.fSFixed32 = try int(o["f_sfixed32"]); m.fSFixed64 = try int(o["f_sfixed64"])
        m.fDouble = try double(o["f_double"]); m.fFloat = Float(try double(o["f_float"]))
        m.fBool = try bool(o["f_bool"]); m.fString = try string(o["f_string"]); m.fBytes = try bytes(o["f_bytes"])
        m.fEnum = try enumValue(o["f_enum"], prefix: "COLOR_")
        if let inner = try object(o["f_inner"]) { m.fInner = try self.inner(inner) }
        m.rInt32 = try array(o["r_int32"]).map { try int($0) }
        m.rInt32Unpacked = try array(o["r_int32_unpacked"]).map { try int($0) }
        m.rSInt64 = try array(o["r_sint64"]).map { try int($0) }
        m.rDouble = try array(o["r_double"]).map { try double($0) }
        m.rString = try array(o["r_string"]).map { try string($0) }
        m.rBytes = try array(o["r_bytes"]).map { try bytes($0) }
        m.rInner = try array(o["r_inner"]).map { try inner(try object($0) ?? [:]) }
        m.rUInt64Unpacked = try array(o["r_uint64_unpacked"]).map { try int($0) }
        m.rBool = try array(o["r_bool"]).map { try bool($0) }
        m.rFixed32 = try array(o["r_fixed32"]).map { try int($0) }
        return m
    }

    static func status(_ o: Object) throws -> Status {
        Status(StatusCode(rawValue: try int(o["code"])), try string(o["message"]), activeAddress: try string(o["active_address"]))
    }

    static func envelope(_ o: Object) throws -> Envelope {
        Envelope(callID: try int(o["call_id"]), method: try string(o["method"]), body: try bytes(o["body"]),
                 status: try object(o["status"]).map(status), deadlineMs: try int(o["deadline_ms"]))
    }

    static func verifyPlanRequest(_ o: Object) throws -> VerifyPlanRequest {
        var m = VerifyPlanRequest()
        m.requestID = try string(o["request_id"]); m.userRequest = try string(o["user_request"])
        m.owner = try string(o["owner"]); m.plan = try bytes(o["plan"]); m.planFormat = try string(o["plan_format"])
        m.changeTicket = try string(o["change_ticket"]); m.registeredRequestID = try string(o["registered_request_id"])
        m.infracost = try bytes(o["infracost"]); m.agentReasoning = try string(o["agent_reasoning"])
        return m
    }

    static func finding(_ o: Object) throws -> Finding {
        Finding(rule: try string(o["rule"]), enforcement: try enumValue(o["enforcement"], prefix: "ENFORCEMENT_"),
                address: try string(o["address"]), path: try string(o["path"]), message: try string(o["message"]),
                before: try string(o["before"]), after: try string(o["after"]), remedy: try string(o["remedy"]),
                overridableBy: try array(o["overridable_by"]).map { try string($0) })
    }

    static func decision(_ o: Object) throws -> Decision {
        var m = Decision()
        m.requestID = try string(o["request_id"]); m.verdict = try enumValue(o["verdict"], prefix: "VERDICT_")
        m.findings = try array(o["findings"]).map { try finding(try object($0) ?? [:]) }
        m.summary = try string(o["summary"]); m.cannotOverride = try bool(o["cannot_override"])
        m.statement = try bytes(o["statement"]); m.signature = try bytes(o["signature"])
        m.keyID = try string(o["key_id"]); m.ledgerIndex = try int(o["ledger_index"])
        m.payloadType = try string(o["payload_type"])
        return m
    }

    static func decisionStatement(_ o: Object) throws -> DecisionStatement {
        var m = DecisionStatement()
        m.requestID = try string(o["request_id"]); m.planSHA256 = try bytes(o["plan_sha256"])
        m.userRequestSHA256 = try bytes(o["user_request_sha256"]); m.policySHA256 = try bytes(o["policy_sha256"])
        m.verdict = try enumValue(o["verdict"], prefix: "VERDICT_"); m.agent = try string(o["agent"])
        m.owner = try string(o["owner"]); m.keyID = try string(o["key_id"])
        m.decidedAtUnixMs = try int(o["decided_at_unix_ms"]); m.rules = try array(o["rules"]).map { try string($0) }
        m.cannotOverride = try bool(o["cannot_override"]); m.changeTicket = try string(o["change_ticket"])
        m.planFormat = try string(o["plan_format"]); m.revision = try int(o["revision"])
        m.confirmations = try array(o["confirmations"]).map { try string($0) }
        m.findings = try array(o["findings"]).map { try finding(try object($0) ?? [:]) }
        m.summary = try string(o["summary"])
        m.planned = try array(o["planned"]).map { p in
            let p = try object(p) ?? [:]
            return PlannedChange(address: try string(p["address"]), action: try string(p["action"]))
        }
        return m
    }

    static func healthResponse(_ o: Object) throws -> HealthResponse {
        var m = HealthResponse()
        m.node = try string(o["node"]); m.role = try string(o["role"]); m.version = try string(o["version"])
        m.activeAddress = try string(o["active_address"]); m.epoch = try int(o["epoch"])
        m.signerAvailable = try bool(o["signer_available"]); m.ledgerAvailable = try bool(o["ledger_available"])
        m.treeSize = try int(o["tree_size"]); m.principal = try string(o["principal"])
        m.policyAvailable = try bool(o["policy_available"]); m.policySHA256 = try string(o["policy_sha256"])
        return m
    }

    static func inclusionProof(_ o: Object) throws -> InclusionProof {
        var m = InclusionProof()
        m.leafIndex = try int(o["leaf_index"]); m.treeSize = try int(o["tree_size"])
        m.hashes = try array(o["hashes"]).map { try bytes($0) }
        return m
    }
}

/// Hex for test vectors (the Wire module has no dependency on CountersignVerify's Hex).
enum Hex {
    static func encode(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
    static func decode(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        var chars = text.makeIterator()
        while let hi = chars.next() {
            guard let lo = chars.next(), let byte = UInt8(String([hi, lo]), radix: 16) else { return nil }
            out.append(byte)
        }
        return out
    }
}
