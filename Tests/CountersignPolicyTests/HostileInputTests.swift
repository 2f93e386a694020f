import Foundation
import Testing
@testable import CountersignPolicy

@Suite("Hostile and malformed input")
struct HostileInputTests {
    func parse(_ bytes: [UInt8], _ format: PlanFormat = .terraformJSON) throws -> Plan {
        try Plan.parse(bytes, format: format)
    }

    func code(_ body: () throws -> Any) -> PolicyError.Code? {
        do {
            _ = try body()
            return nil
        } catch let e as PolicyError {
            return e.code
        } catch {
            return nil
        }
    }

    @Test("10,000-deep nesting is refused quickly", arguments: ["[", "{\"a\":"])
    func deepNesting(_ open: String) throws {
        let close = open == "[" ? "]" : "}"
        let text = "{\"format_version\":\"1.2\",\"x\":" + String(repeating: open, count: 10_000) + "1"
            + String(repeating: close, count: 10_000) + "}"
        let start = ContinuousClock.now
        #expect(code { try parse(Array(text.utf8)) } == .invalidJSON)
        #expect(ContinuousClock.now - start < .seconds(1))
        // 100,000 unclosed brackets too.
        #expect(code { try parse(Array(String(repeating: "[", count: 100_000).utf8)) } == .invalidJSON)
    }

    @Test("a 50 MB plan is refused from its size before parsing")
    func hugePlan() throws {
        var bytes = Array("{\"format_version\":\"1.2\",\"resource_changes\":[".utf8)
        let item = Array("{\"address\":\"a.b\",\"type\":\"a\",\"name\":\"b\",\"change\":{\"actions\":[\"create\"]}},".utf8)
        bytes.reserveCapacity(50 << 20)
        while bytes.count < 50 << 20 { bytes.append(contentsOf: item) }
        let start = ContinuousClock.now
        do {
            _ = try parse(bytes)
            Issue.record("a 50 MB plan was accepted")
        } catch let e as PolicyError {
            #expect(e.code == .tooLarge)
            #expect(e.grpcStatusName == "RESOURCE_EXHAUSTED")
        }
        #expect(ContinuousClock.now - start < .seconds(1))
    }

    @Test("millions of tiny objects are refused, bounding memory whatever the shape")
    func manyContainers() throws {
        var bytes = Array("{\"format_version\":\"1.2\",\"x\":[".utf8)
        for _ in 0..<600_000 { bytes.append(contentsOf: Array("{},".utf8)) }
        bytes.append(contentsOf: Array("{}]}".utf8))
        #expect(bytes.count < PlanLimits.defaults.maxPlanBytes)
        #expect(code { try parse(bytes) } == .invalidJSON)
    }

    @Test("invalid UTF-8, duplicate keys, huge numbers, bad syntax: clear errors",
          arguments: [
            [0x7B, 0x22, 0x61, 0x22, 0x3A, 0x22, 0xFF, 0xFE, 0x22, 0x7D],           // {"a":"\xFF\xFE"}
            [0x7B, 0x22, 0xC3, 0x28, 0x22, 0x3A, 0x31, 0x7D],                       // bad 2-byte sequence in a key
            [0x7B, 0x22, 0xED, 0xA0, 0x80, 0x22, 0x3A, 0x31, 0x7D],                 // UTF-8 encoded surrogate
            Array("{\"format_version\":\"1.2\",\"format_version\":\"3.0\"}".utf8),
            Array("{\"format_version\":\"1.2\",\"n\":99999999999999999999}".utf8),
            Array("{\"format_version\":\"1.2\",\"n\":-9223372036854775809}".utf8),
            Array("{\"format_version\":\"1.2\",\"n\":1e999}".utf8),
            Array("{\"format_version\":\"1.2\",\"s\":\"\\ud800\"}".utf8),
            Array("{\"format_version\":\"1.2\",\"s\":\"a\u{01}b\"}".utf8),
            Array("{\"format_version\":\"1.2\",}".utf8),
            Array("{\"format_version\":\"1.2\"} {}".utf8),
            Array("{\"format_version\":01}".utf8),
            Array("{'format_version':'1.2'}".utf8),
            Array("".utf8),
            Array("{\"format_version\":\"1.2\"".utf8),
            Array("NaN".utf8),
          ] as [[UInt8]])
    func invalidJSON(_ bytes: [UInt8]) throws {
        #expect(code { try parse(bytes) } == .invalidJSON)
        #expect(code { try parse(bytes, .changesetJSON) } == .invalidJSON)
    }

    @Test("the edges of the number range are accepted")
    func numberEdges() throws {
        let v = try JSONReader.parse(Array("[9223372036854775807,-9223372036854775808,1.5e300,-0,0.0]".utf8), maxDepth: 8)
        #expect(v[0] == .int(Int64.max))
        #expect(v[1] == .int(Int64.min))
        #expect(v[2] == .double(1.5e300))
    }

    @Test("escapes and surrogate pairs decode")
    func escapes() throws {
        let v = try JSONReader.parse(Array(#"["a\"b\\c\/\n\u00e9\ud83d\ude00"]"#.utf8), maxDepth: 8)
        #expect(v[0] == .string("a\"b\\c/\né😀"))
    }

    @Test("format_version 2.x is refused, and 0.1 to 1.x accepted")
    func formatVersions() throws {
        func plan(_ v: String) -> [UInt8] { Array("{\"format_version\":\"\(v)\"}".utf8) }
        #expect(code { try parse(plan("2.0")) } == .unsupportedFormatVersion)
        #expect(code { try parse(plan("10.3")) } == .unsupportedFormatVersion)
        #expect(code { try parse(plan("0.0")) } == .unsupportedFormatVersion)
        do {
            _ = try parse(plan("2.0"))
        } catch let e as PolicyError {
            #expect(e.message.contains("2.0"))
            #expect(e.message.contains("not supported"))
        }
        for v in ["0.1", "0.2", "1.0", "1.2", "1.9"] { #expect(try parse(plan(v)).changes.isEmpty) }
        #expect(code { try parse(Array("{}".utf8)) } == .invalidPlan)
        #expect(code { try parse(Array("{\"format_version\":1.2}".utf8)) } == .invalidPlan)
    }

    /// A valid plan with one resource change, to break field by field.
    static let validPlan = """
    {"format_version":"1.2","resource_changes":[{"address":"aws_ebs_volume.v","mode":"managed",
    "type":"aws_ebs_volume","name":"v","index":0,"provider_name":"aws","module_address":"module.m",
    "change":{"actions":["create"],"before":null,"after":{"encrypted":false,"tags":{"Owner":"o"}},
    "after_unknown":{"id":true},"before_sensitive":false,"after_sensitive":{}}}]}
    """

    /// Every value of the valid plan replaced by a value of each wrong type.
    static func wrongTypeVariants() throws -> [[UInt8]] {
        let root = try JSONReader.parse(Array(validPlan.utf8), maxDepth: 64)
        let replacements: [JSONValue] = [.null, .bool(true), .int(7), .string("x"), .array([.int(1)]), .object(["k": .int(1)])]
        var out: [[UInt8]] = []
        func walk(_ v: JSONValue, _ rebuild: @escaping (JSONValue) -> JSONValue) {
            for r in replacements where r.typeName != v.typeName { out.append(Array(rebuild(r).compactText.utf8)) }
            switch v {
            case .object(let o):
                for (k, child) in o {
                    walk(child) { new in var o2 = o; o2[k] = new; return rebuild(.object(o2)) }
                }
            case .array(let a):
                for (i, child) in a.enumerated() {
                    walk(child) { new in var a2 = a; a2[i] = new; return rebuild(.array(a2)) }
                }
            default: break
            }
        }
        walk(root) { $0 }
        return out
    }

    @Test("wrong types at every level give an error or a decision, never a crash")
    func wrongTypes() throws {
        let variants = try HostileInputTests.wrongTypeVariants()
        #expect(variants.count > 100)
        var errors = 0
        for bytes in variants {
            for format in PlanFormat.allCases {
                do {
                    let r = EvaluationRequest(requestID: "r", userRequest: "Create a volume", owner: "o", plan: bytes, planFormat: format)
                    _ = try PolicyEngine().evaluate(r)
                } catch let e as PolicyError {
                    errors += 1
                    #expect(!e.message.isEmpty)
                    #expect(e.code == .invalidPlan || e.code == .unsupportedFormatVersion)
                }
            }
        }
        #expect(errors > 50)
        // A wrong type is named by its path.
        let bad = Array(HostileInputTests.validPlan.replacingOccurrences(of: "\"actions\":[\"create\"]", with: "\"actions\":\"create\"").utf8)
        do {
            _ = try parse(bad)
            Issue.record("accepted")
        } catch let e as PolicyError {
            #expect(e.message.contains("resource_changes[0].change.actions"))
        }
    }

    @Test("an unknown encryption flag is neither encrypted nor unencrypted")
    func afterUnknown() throws {
        let text = HostileInputTests.validPlan
            .replacingOccurrences(of: "\"encrypted\":false,", with: "")
            .replacingOccurrences(of: "{\"id\":true}", with: "{\"id\":true,\"encrypted\":true}")
        let d = try PolicyEngine().evaluate(EvaluationRequest(requestID: "r", userRequest: "Create a volume", owner: "o",
                                                              plan: Array(text.utf8), planFormat: .terraformJSON))
        #expect(!d.findings.contains { $0.rule == "encryption-at-rest" })
        let f = try #require(d.findings.first { $0.rule == "encryption-explicit" })
        #expect(f.after == "(known after apply)")
        #expect(d.verdict == .escalate)
        // And explicitly false is the hard rule.
        let d2 = try PolicyEngine().evaluate(EvaluationRequest(requestID: "r", userRequest: "Create a volume", owner: "o",
                                                               plan: Array(HostileInputTests.validPlan.utf8), planFormat: .terraformJSON))
        #expect(d2.findings.contains { $0.rule == "encryption-at-rest" && $0.after == "false" && $0.path == "encrypted" })
        #expect(d2.cannotOverride)
    }

    @Test("data sources are ignored; replace and forget are understood; sensitive values are redacted")
    func actions() throws {
        let text = """
        {"format_version":"1.2","resource_changes":[
        {"address":"data.aws_ami.x","mode":"data","type":"aws_ami","name":"x","change":{"actions":["read"]}},
        {"address":"aws_db_instance.db","mode":"managed","type":"aws_db_instance","name":"db",
         "change":{"actions":["create","delete"],"before":{"password":"hunter2-old","storage_encrypted":true},
         "after":{"password":"hunter2-new","storage_encrypted":true,"publicly_accessible":true},
         "after_sensitive":{"password":true},"before_sensitive":{"password":true}}},
        {"address":"aws_s3_bucket.keep","mode":"managed","type":"aws_s3_bucket","name":"keep",
         "change":{"actions":["forget"],"before":{"bucket":"keep"},"after":null}}
        ]}
        """
        let plan = try parse(Array(text.utf8))
        #expect(plan.changes.map(\.address) == ["aws_db_instance.db", "aws_s3_bucket.keep"])
        #expect(plan.changes[0].isReplace)
        #expect(plan.changes[0].sensitivePaths == ["password"])
        #expect(plan.changes[1].actions == [.forget])
        #expect(!plan.changes[1].isDestructive)
        let d = try PolicyEngine().evaluate(EvaluationRequest(requestID: "r", userRequest: "Upgrade the database", owner: "o",
                                                              plan: Array(text.utf8), planFormat: .terraformJSON))
        #expect(d.findings.contains { $0.rule == "deletion-confirmation" && $0.address == "aws_db_instance.db" })
        #expect(!d.findings.contains { $0.rule == "deletion-confirmation" && $0.address == "aws_s3_bucket.keep" })
        #expect(!d.findings.contains { $0.rule == "plaintext-secret" })
        for f in d.findings {
            #expect(!"\(f)".contains("hunter2"))
        }
    }

    @Test("the change set reader names wrong types")
    func changesetErrors() throws {
        #expect(code { try parse(Array("{}".utf8), .changesetJSON) } == .invalidPlan)
        #expect(code { try parse(Array("[]".utf8), .changesetJSON) } == .invalidPlan)
        #expect(code { try parse(Array("{\"action\":\"x\",\"resources_to_delete\":\"a\"}".utf8), .changesetJSON) } == .invalidPlan)
        #expect(code { try parse(Array("{\"action\":\"x\",\"cost_increase\":\"lots\"}".utf8), .changesetJSON) } == .invalidPlan)
        #expect(code { try PlanFormat(wireName: "hcl") } == .unknownPlanFormat)
    }

    @Test("Infracost: diffTotalMonthlyCost raises the cost; bad documents are errors")
    func infracost() throws {
        let plan = Array("{\"format_version\":\"1.2\"}".utf8)
        var r = EvaluationRequest(requestID: "r", userRequest: "Scale up", owner: "o", plan: plan, planFormat: .terraformJSON,
                                  infracost: Array("{\"diffTotalMonthlyCost\":\"1500.25\",\"projects\":[]}".utf8))
        let d = try PolicyEngine().evaluate(r)
        #expect(d.findings.map(\.rule) == ["cost-threshold"])
        #expect(d.summary.contains("$1,500.25"))
        #expect(try PolicyEngine().evaluate(r, confirmations: Confirmations(financeApproved: true)).verdict == .approved)
        r.infracost = Array("{\"diffTotalMonthlyCost\":true}".utf8)
        #expect(code { try PolicyEngine().evaluate(r) } == .invalidInfracost)
        r.infracost = Array("{\"diffTotalMonthlyCost\":null}".utf8)
        #expect(try PolicyEngine().evaluate(r).verdict == .approved)
    }
}
