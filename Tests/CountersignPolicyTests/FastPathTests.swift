import Testing
@testable import CountersignPolicy

/// The engine's fast paths (JSON objects without hashing, byte-level reading of ASCII names and
/// values) against the definitions they replace: same answers on every input, including the
/// non-ASCII ones where characters and bytes differ.
@Suite("Fast paths agree with their definitions")
struct FastPathTests {
    func parse(_ text: String) throws -> JSONValue {
        try JSONReader.parse(Array(text.utf8), maxDepth: 16)
    }

    func errorMessage(_ text: String) -> String? {
        do {
            _ = try parse(text)
            return nil
        } catch let e as PolicyError {
            return e.message
        } catch {
            return "\(error)"
        }
    }

    /// `{"k0":0,"k1":1,…}` with `n` members.
    static func object(_ n: Int, extra: String = "") -> String {
        "{" + (0..<n).map { "\"k\($0)\":\($0)" }.joined(separator: ",") + extra + "}"
    }

    @Test("objects keep their members in document order; canonical text sorts the keys")
    func memberOrder() throws {
        let v = try parse(#"{"b":1,"a":{"z":true,"y":null},"c":[3]}"#)
        let o = try #require(v.object)
        #expect(Array(o.keys) == ["b", "a", "c"])
        #expect(Array(o.values) == [.int(1), .object(["z": .bool(true), "y": .null]), .array([.int(3)])])
        #expect(v.compactText == #"{"a":{"y":null,"z":true},"b":1,"c":[3]}"#)
        let large = try #require(try parse(FastPathTests.object(40)).object)
        #expect(Array(large.keys) == (0..<40).map { "k\($0)" })
    }

    @Test("lookups in small and indexed objects", arguments: [0, 1, 16, 17, 40, 300])
    func lookups(_ n: Int) throws {
        let v = try parse(FastPathTests.object(n))
        for i in 0..<n { #expect(v["k\(i)"] == .int(Int64(i))) }
        #expect(v["k\(n)"] == nil)
        #expect(v["K0"] == nil)
        #expect(v.object?.count == n)
    }

    @Test("a duplicate key is refused at its offset, after its value is read, in objects of any size",
          arguments: [1, 2, 15, 16, 17, 40])
    func duplicateKeys(_ n: Int) throws {
        let text = FastPathTests.object(n, extra: ",\"k0\":0")
        let offset = text.utf8.count - 7
        #expect(errorMessage(text) == "the plan is not valid JSON: duplicate key in an object at byte \(offset)")
        // The value after a duplicate key is read first: its own error wins.
        let bad = FastPathTests.object(n, extra: ",\"k0\":tru")
        #expect(errorMessage(bad) == "the plan is not valid JSON: unexpected character at byte \(bad.utf8.count - 4)")
        // A duplicate in a nested object, and the same key in sibling objects (allowed).
        #expect(errorMessage("[{\"a\":1},{\"a\":2,\"b\":3,\"a\":4}]") == "the plan is not valid JSON: duplicate key in an object at byte 22")
        #expect(errorMessage("{\"a\":{\"a\":{\"a\":1}},\"b\":{\"a\":2}}") == nil)
    }

    @Test("keys are compared as strings: canonically equivalent keys are the same key, as in a dictionary")
    func canonicalKeys() throws {
        #expect(errorMessage(#"{"\u00e9":1,"e\u0301":2}"#) == "the plan is not valid JSON: duplicate key in an object at byte 12")
        #expect(errorMessage(FastPathTests.object(20, extra: #","\u00e9":1,"e\u0301":2"#)) != nil)
        let v = try parse(#"{"\u00e9":1}"#)
        #expect(v["e\u{301}"] == .int(1))
        #expect(v["\u{e9}"] == .int(1))
    }

    @Test("equality and hashing ignore member order, as a dictionary's do")
    func equality() throws {
        let a = try parse(#"{"a":1,"b":{"x":[1,2],"y":"z"}}"#)
        let b = try parse(#"{"b":{"y":"z","x":[1,2]},"a":1}"#)
        #expect(a == b)
        #expect(a.hashValue == b.hashValue)
        #expect(a != (try parse(#"{"a":1,"b":{"x":[2,1],"y":"z"}}"#)))
        #expect(a != (try parse(#"{"a":1}"#)))
        let big1 = try parse(FastPathTests.object(30))
        let big2 = try parse("{" + (0..<30).reversed().map { "\"k\($0)\":\($0)" }.joined(separator: ",") + "}")
        #expect(big1 == big2)
        #expect(big1.hashValue == big2.hashValue)
    }

    @Test("setting, adding and removing members, below and above the index threshold")
    func mutation() {
        var o: JSONObject = ["a": .int(1)]
        for i in 0..<40 { o["k\(i)"] = .int(Int64(i)) }
        #expect(o.count == 41)
        o["a"] = .string("x")
        #expect(o["a"] == .string("x"))
        #expect(o.count == 41)
        for i in stride(from: 0, to: 40, by: 2) { o["k\(i)"] = nil }
        #expect(o.count == 21)
        for i in 0..<40 { #expect(o["k\(i)"] == (i % 2 == 0 ? nil : .int(Int64(i)))) }
        #expect(Array(o.keys.prefix(3)) == ["a", "k1", "k3"])
        for i in 0..<40 { o["k\(i)"] = nil }
        #expect(o == ["a": .string("x")])
        #expect(JSONObject(["b": .int(2), "a": .int(1)]).map(\.key) == ["a", "b"])
    }

    @Test("integers: the whole 64-bit range, nothing beyond", arguments: [
        ("0", "0"), ("-0", "0"), ("7", "7"), ("-7", "-7"), ("9223372036854775807", "9223372036854775807"),
        ("-9223372036854775808", "-9223372036854775808"), ("9223372036854775808", nil), ("-9223372036854775809", nil),
        ("10000000000000000000", nil), ("99999999999999999999999", nil),
    ] as [(String, String?)])
    func integers(_ text: String, _ expected: String?) throws {
        if let expected {
            #expect(try parse("[" + text + "]") == .array([.int(Int64(expected)!)]))
        } else {
            #expect(errorMessage("[1, " + text + "]") == "the plan is not valid JSON: integer beyond the 64-bit range at byte 4")
        }
    }
}
