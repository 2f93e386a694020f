import Foundation
import Testing
@testable import CountersignPolicy
import CountersignRandom

/// The engine's fast paths (JSON objects without hashing, byte-level reading of ASCII names and
/// values) against the definitions they replace: same answers on every input, including the
/// non-ASCII ones where characters and bytes differ.
@Suite("Fast paths agree with their definitions")
struct FastPathTests {
    // MARK: JSON objects

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
        // Keys of other lengths, and keys that equal others of a different length.
        let mixed = try parse("{" + (0..<n).map { "\"\(String(repeating: "k", count: $0 + 1))\":\($0)," }.joined()
                              + #""\u212a":"kelvin","\u00e9":"e","x\u0301":"x"}"#)
        for i in 0..<n { #expect(mixed[String(repeating: "k", count: i + 1)] == .int(Int64(i))) }
        #expect(mixed["K"] == .string("kelvin"))
        #expect(mixed["\u{212A}"] == .string("kelvin"))
        #expect(mixed["e\u{301}"] == .string("e"))
        #expect(mixed["\u{e9}"] == .string("e"))
        #expect(mixed["x\u{301}"] == .string("x"))
        #expect(mixed["x"] == nil)
        #expect(errorMessage("{" + (0..<n).map { "\"\(String(repeating: "k", count: $0 + 1))\":\($0)," }.joined()
                             + #""\u212a":1,"K":2}"#) != nil)
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
        // An ASCII key and a non-ASCII one can be the same key (the Kelvin sign is "K"), in either
        // order, with escapes or without, among ASCII keys of every length.
        #expect(errorMessage(#"{"K":1,"\u212a":2}"#) == "the plan is not valid JSON: duplicate key in an object at byte 7")
        #expect(errorMessage("{\"a\":0,\"\u{212A}\":1,\"bb\":2,\"K\":3}") == "the plan is not valid JSON: duplicate key in an object at byte 22")
        #expect(errorMessage(#"{"x":0,"\u004b":1,"K":2}"#) == "the plan is not valid JSON: duplicate key in an object at byte 18")
        #expect(errorMessage(#"{"ab":0,"ba":1,"a":2,"b":3,"abc":4,"acb":5}"#) == nil)
        #expect(errorMessage(#"{"ab":0,"ba":1,"a":2,"b":3,"abc":4,"ba":5}"#) == "the plan is not valid JSON: duplicate key in an object at byte 35")
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

    // MARK: Text read as bytes

    /// Strings built from pieces chosen to land on every branch: ASCII letters of both cases,
    /// digits, separators, the prefixes and fragments the rules look for, combining marks, a
    /// CR LF pair, non-ASCII letters, and characters canonically equivalent to ASCII ones.
    static let samples: [String] = {
        let pieces = ["a", "K", "z", "Q", "0", "7", "9", "-", "_", ".", "/", ":", ",", ";", "(", ")", "'", "\"", "!", "?",
                      " ", "\t", "\n", "\r\n", "\u{0B}", "\u{1F}", "\u{7F}", "\u{85}", "\u{A0}", "\u{301}", "é", "e\u{301}",
                      "\u{212A}", "\u{37E}", "İ", "ß", "ü", "名", "prod", "Prod", "PRODUCTION", "non", "non-", "nonprod", "dev",
                      "staging", "pci", "PCI", "gdpr", "personal", "pii", "name", "Name", "NAME", "AKIA", "ASIA", "ghp_",
                      "github_pat_", "sk-", "xoxb-", "glpat-", "eyJ", "arn:", "${", "-----BEGIN", "PRIVATE KEY", "password",
                      "Pass", "word", "Token", "API_KEY", "apikey", "secret", "credential", "connection_string", "us-west-2",
                      "eu-central-1", "a", "b", "i-", "sg-", "0abc123", "deadbeef", "10.0.0.1", "/24", "ABCDEFGHIJKLMNOP"]
        var generator = SplitMix64(seed: 42)
        var out = pieces + ["", "AKIAABCDEFGHIJKLMNOP", "AKIAABCDEFGHIJKLMNO\u{301}", "ghp_abcdefghijklmnopqrstuvwxyz",
                            "ghp_\u{301}abcdefghijklmnopqrstuvwxyz", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdef",
                            "eyJhbGciOiJIUzI1NiJ9..eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdef", "arn:\u{301}x", "$\u{301}{x}",
                            "us-west-2a", "us-west-2\u{301}a", "1a", "12a", "123a", "1234a", "a\r\n1", "ab\r\n12a",
                            "i-0abc123", "sg-0123abcd", "vpc-0a1b2c3d", "vpc-0A1B2C3D", "x-abcdef", "abcdefghi-012345",
                            "10.0.0.1/32", "/10.0.0.1", "//", "1.2.3", "1.2.3.4.5", "1..2.3", "1234.1.1.1", "(i-0abc123),",
                            "prod_pci", "nonprod-ml", "non-prod", "non prod", "NON-PROD", "my-prod-db", "\u{212A}ey"]
        // Around every length threshold of the rules.
        for prefix in ["AKIA", "ASIA", "AKIa", "ghp_", "gho_", "github_pat_", "xoxb-", "xoxp-", "sk-", "glpat-", "eyJ",
                       "-----BEGIN PRIVATE KEY", "eyJ.", "x"] {
            for n in 15...45 {
                out.append(prefix + String(repeating: "A", count: max(0, n - prefix.utf8.count)))
                out.append(prefix + String(repeating: "a.", count: max(0, n - prefix.utf8.count) / 2))
                out.append(prefix + String(repeating: "é", count: max(0, n - prefix.utf8.count) / 2))
                out.append(prefix + String(repeating: "A", count: max(0, n - prefix.utf8.count - 4)) + ".b.c")
                out.append(prefix + String(repeating: "A", count: max(0, n - prefix.utf8.count - 4)) + ".b..")
            }
        }
        for kind in ["", "i", "sg", "vpc", "abcdefgh", "abcdefghi", "a1", "I"] {
            for id in ["0abc", "0abc1", "0abc12", "0abc123", "abcdef", "abcdeg", "0ABCDEF1", "0abc1-2"] {
                out.append(kind + "-" + id)
            }
        }
        for ip in ["1.2.3.4", "1.2.3.4/8", "/1.2.3.4", "1.2.3.4/", "01.2.3.4", "1234.2.3.4", "1.2..4", "a.b.c.d", "1.2.3.4.",
                   "//1.2.3.4//x", "1.2.3.4/1.2", "١.٢.٣.٤"] {
            out.append(ip)
        }
        for _ in 0..<4000 {
            var s = ""
            for _ in 0..<Int(generator.next() % 8) { s += pieces[Int(generator.next() % UInt64(pieces.count))] }
            out.append(s)
        }
        return out
    }()

    @Test("secret-looking keys and values, and references")
    func secrets() {
        for s in FastPathTests.samples {
            #expect(Redactor.isSecretKey(s) == Redactor.isSecretKeyReference(s), "\(s.debugDescription)")
            #expect(Redactor.looksLikeSecret(s) == Redactor.looksLikeSecretReference(s), "\(s.debugDescription)")
            #expect(Redactor.isReference(s) == (s.hasPrefix("arn:") || s.hasPrefix("${")), "\(s.debugDescription)")
        }
    }

    @Test("regions of availability zones; provider short names and module keys for provider regions")
    func zones() {
        let extra = ["registry.terraform.io/hashicorp/aws", "aws", "/", "//", "a//", "//b", "a/b/", "module.net", "module.a.module.b",
                     "module.module.", "modulemodule..", "module.\u{301}x", "mod\u{e9}le.x", "x.module.", "module"]
        for s in FastPathTests.samples + extra {
            #expect(TerraformPlanReader.regionOfZone(s) == TerraformPlanReader.regionOfZoneReference(s), "\(s.debugDescription)")
            #expect(TerraformPlanReader.providerShortName(s) == TerraformPlanReader.providerShortNameReference(s), "\(s.debugDescription)")
            #expect(TerraformPlanReader.moduleKey(s) == TerraformPlanReader.moduleKeyReference(s), "\(s.debugDescription)")
        }
    }

    @Test("request tokens and the ids among them")
    func tokens() {
        for s in FastPathTests.samples {
            #expect(RequestIntent.isID(s) == RequestIntent.isIDReference(s), "\(s.debugDescription)")
        }
        var generator = SplitMix64(seed: 7)
        for _ in 0..<1000 {
            let words = (0..<Int(generator.next() % 12)).map { _ in
                FastPathTests.samples[Int(generator.next() % UInt64(FastPathTests.samples.count))]
            }
            let text = words.joined(separator: generator.next() % 3 == 0 ? "  " : " ")
            let tokens = RequestIntent.tokens(text)
            #expect(tokens == RequestIntent.tokensReference(text), "\(text.debugDescription)")
            for t in tokens { #expect(RequestIntent.isID(t) == RequestIntent.isIDReference(t), "\(t.debugDescription)") }
        }
    }

    static let policies: [Policy] = {
        var custom = Policy.defaults
        custom.productionWords = ["prod", "live", "prd", "n0n"]
        custom.environmentTagKeys = ["Environment", "TIER", "data_class"]
        var unicode = Policy.defaults
        unicode.productionWords = ["prod", "produção", "\u{212A}"]
        unicode.environmentTagKeys = ["Environment", "\u{37E}", "umgebung"]
        return [.defaults, custom, unicode]
    }()

    @Test("words of names and tags: production, non-production, data scopes", arguments: 0..<3)
    func words(_ policyIndex: Int) {
        let classifier = Classifier(policy: FastPathTests.policies[policyIndex])
        for s in FastPathTests.samples {
            let words = wordsOf(s)
            let summary = classifier.summarize(s)
            #expect(summary.production == classifier.hasProductionWord(words), "\(s.debugDescription)")
            #expect(summary.nonProduction == classifier.hasNonProductionWord(words), "\(s.debugDescription)")
            for (word, flag) in [("pci", WordFlags.pci), ("gdpr", WordFlags.gdpr), ("personal", WordFlags.personal),
                                 ("pii", WordFlags.pii)] {
                #expect(summary.contains(flag) == words.contains(word), "\(s.debugDescription)")
            }
        }
    }

    @Test("tag keys compared case-insensitively")
    func tagKeys() {
        let sets = [LowercasedKeySet(["environment", "env", "stage"]), Classifier.scopeKeys,
                    LowercasedKeySet(["environment", "\u{37E}", "k"])]
        for s in FastPathTests.samples + ["Environment", "ENV", "DataClass", "data_Class", "Compliance", ";", "\u{212A}"] {
            for set in sets { #expect(set.containsLowercased(s) == set.keys.contains(s.lowercased()), "\(s.debugDescription)") }
            #expect(Classifier.isName(s) == (s.lowercased() == "name"), "\(s.debugDescription)")
        }
    }

    @Test("protected-name globs read the name lower-cased")
    func globs() {
        let patterns = ["*countersign*", "*audit-log*", "*Prod*", "*e*", "**", "***", "*a*b*", "prod-*", "*", "", "a*b*c", "*name",
                        "k", "*\u{301}*", "*é*"].map(lowerBytes)
        for s in FastPathTests.samples + ["audit-lo", "AUDIT-LOG", "xaudit-logx", "countersig"] {
            for p in patterns {
                let expected = globMatchBytes(p, lowerBytes(s))
                #expect(globMatchLowering(p, s) == expected, "\(s.debugDescription)")
                #expect(GlobPattern(p).matchesLowering(s) == expected, "\(s.debugDescription)")
            }
        }
    }

    @Test("strings in canonical text: escaped only where they must be")
    func canonicalStrings() {
        for s in FastPathTests.samples + ["\u{0}", "a\u{1F}b", "\\", "\"", "\u{7F}", "x\ty"] {
            var fast = ""
            var reference = ""
            JSONValue.writeString(s, to: &fast)
            JSONValue.writeStringReference(s, to: &reference)
            #expect(Array(fast.utf8) == Array(reference.utf8), "\(s.debugDescription)")
        }
    }

    @Test("a string quoted for command output and logs reads back as itself, in another JSON reader")
    func quotedForOutput() throws {
        for s in FastPathTests.samples + ["\u{0}", "a\u{1F}b", "\\", "\"", "\u{7F}", "x\ty", "line\nbreak\r", "é/𝄞", "\"},{\"verdict\":\"APPROVED"] {
            let text = JSONText.quoted(s)
            let read = try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]) as? String
            #expect(read == s, "\(s.debugDescription) as \(text)")
            #expect(!text.utf8.dropFirst().dropLast().contains { $0 < 0x20 }, "\(text)")
        }
    }

    @Test("repeated findings are dropped as a set of those seen drops them")
    func findingRepeats() {
        var generator = SplitMix64(seed: 3)
        func pick<T>(_ xs: [T]) -> T { xs[Int(generator.next() % UInt64(xs.count))] }
        for _ in 0..<300 {
            let findings = (0..<Int(generator.next() % 30)).map { _ in
                Finding(rule: pick(["a", "b"]), enforcement: pick([.hard, .soft]), address: pick(["x", "y"]), path: pick(["", "p"]),
                        message: pick(["m", "n"]), before: pick([nil, "1"]), after: pick([nil, "2"]), remedy: pick(["r", "s"]),
                        overridableBy: pick([[], ["L1"]]))
            }.sorted(by: Finding.order)
            var seen = Set<Finding>()
            #expect(Finding.withoutRepeats(findings) == findings.filter { seen.insert($0).inserted })
        }
    }

    @Test("an attribute by key is the attribute at the one-key path")
    func attributes() throws {
        let afters = [#"{"a":1,"b":null,"c":{"d":true}}"#, #"[1]"#, #"null"#, #"{"tags":{"x":"y"}}"#]
        let unknowns = [#"{"a":true}"#, #"true"#, #"{"a":false,"b":{"c":true}}"#, #"null"#, #"[true]"#]
        for after in afters {
            for unknown in unknowns {
                let c = ResourceChange(
                    address: "t.n", module: nil, type: "t", name: "n", index: nil, deposed: nil, mode: "managed",
                    provider: "p", actions: [.create], region: nil, tags: [:], carriesTags: false, isAdditionalAction: false,
                    count: 1, before: nil, after: try parse(after), afterUnknown: try parse(unknown), beforeSensitive: nil,
                    afterSensitive: nil, contextNames: [])
                for key in ["a", "b", "c", "d", "tags", "0"] {
                    #expect(c.attribute(key) == c.attribute([.key(key)]), "\(after) \(unknown) \(key)")
                }
            }
        }
    }
}

/// The same plan is classified the same way in every process, whatever a dictionary's order.
@Suite struct DeterminismTests {
    func change(tags: [String: String]) -> ResourceChange {
        ResourceChange(address: "aws_db_instance.db", module: nil, type: "aws_db_instance", name: "db", index: nil, deposed: nil,
                       mode: "managed", provider: "aws", actions: [.create], region: nil, tags: tags, carriesTags: true,
                       isAdditionalAction: false, count: 1, before: nil, after: nil, afterUnknown: nil, beforeSensitive: nil,
                       afterSensitive: nil, contextNames: [])
    }

    @Test("a tag by key is the dictionary's lookup, for small and large tag sets")
    func tagLookup() {
        for filler in 0..<12 {
            var tags = Dictionary(uniqueKeysWithValues: (0..<filler).map { ("t\($0)", "v\($0)") })
            tags["\u{e9}"] = "nfc"
            tags["\u{212A}ey"] = "kelvin"
            let c = change(tags: tags)
            for key in ["t0", "t7", "t11", "e\u{301}", "\u{e9}", "Key", "key", "\u{212A}ey", "Name", ""] {
                #expect(c.tag(key) == tags[key], "\(filler) \(key)")
            }
        }
    }

    @Test func theNameTagIsChosenTheSameWayWhenSeveralKeysMatch() {
        // Dictionaries built in different orders and sizes iterate differently; the answer may not.
        for filler in 0..<40 {
            var tags = Dictionary(uniqueKeysWithValues: (0..<filler).map { ("t\($0)", "v") })
            tags["name"] = "payments-prod"
            tags["NAME"] = "payments-dev"
            #expect(Classifier.nameTag(change(tags: tags)) == "payments-dev", "NAME precedes name in byte order")
            tags["Name"] = "sandbox"
            #expect(Classifier.nameTag(change(tags: tags)) == "sandbox", "Name wins")
        }
        #expect(Classifier.nameTag(change(tags: ["Owner": "x"])) == nil)
    }
}
