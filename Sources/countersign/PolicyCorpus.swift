import ArgumentParser
import CountersignPolicy
import CountersignRandom
import CountersignVerify
import Foundation

/// `countersign plan corpus` (hidden): evaluates a deterministic corpus of plans (the fixtures
/// under ../shared and generated mutations of them) and writes a canonical dump of every parse
/// and decision, or error. scripts/policy-diff compares the dumps of two builds: a change that
/// is meant to be a pure speed-up must leave the dump byte-identical.
struct PlanCorpus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "corpus",
        abstract: "Dump the policy engine's answers for a corpus of plans (used by scripts/policy-diff).",
        shouldDisplay: false
    )

    @Option(name: .long, help: "The shared directory (fixtures/scenarios, fixtures/terraform/public).")
    var shared: String

    @Option(name: .long, help: "Where to write the dump.")
    var out: String

    func run() throws {
        var corpus = PolicyCorpus()
        try corpus.collect(shared: shared)
        var dump = PolicyCorpus.Dump()
        let engines = PolicyCorpus.policies.map { PolicyEngine(policy: $0) }
        for (n, c) in corpus.cases.enumerated() {
            dump.line("== case \(n) \(c.label) \(c.format.rawValue) \(c.plan.count) bytes")
            dump.parse(c.plan, c.format)
            for (e, engine) in engines.enumerated() {
                let contexts = c.fullContexts ? PolicyCorpus.contexts(for: c) : [PolicyCorpus.contexts(for: c)[e % 2]]
                if !c.fullContexts && e > 0 { continue }
                for (r, ctx) in contexts.enumerated() {
                    dump.line("-- policy \(e) context \(r)")
                    let req = EvaluationRequest(requestID: "corpus-\(n)", userRequest: ctx.request, owner: "corpus",
                                                plan: c.plan, planFormat: c.format, changeTicket: ctx.ticket,
                                                infracost: ctx.infracost)
                    dump.evaluate(engine, req, ctx.confirmations)
                }
            }
        }
        try Data(dump.text.utf8).write(to: URL(fileURLWithPath: out))
        print("\(corpus.cases.count) plans, \(dump.evaluations) evaluations, \(dump.text.utf8.count) bytes of dump")
    }
}

/// The corpus: fixtures and deterministic mutations of them.
struct PolicyCorpus {
    struct Case {
        var label: String
        var plan: [UInt8]
        var format: PlanFormat
        /// Every policy with every context (fixtures); otherwise one policy and one context.
        var fullContexts: Bool
        var request: String?
    }

    struct Context {
        var request: String
        var ticket: String?
        var confirmations: Confirmations
        var infracost: [UInt8]?
    }

    var cases: [Case] = []

    static let policies: [Policy] = [
        .defaults,
        Policy { p in
            p.costThresholdMonthlyUSD = 10
            p.changeTicketPrefixes = ["CHG-", "INC-"]
            p.requiredTags = ["Owner", "name", "Team"]
            p.environmentTagKeys = ["Environment", "tier", "Ümgebung"]
            p.productionWords = ["prod", "production", "live", "prodüktion"]
            p.protectedNames = ["*countersign*", "web*", "*-db", "*é*", "bucket-*"]
            p.auditResourceTypes = ["aws_cloudtrail*", "aws_s3_bucket_logging", "*_flow_log"]
            p.regionAllowLists = ["gdpr": ["eu-*"], "pci": ["us-west-*", "us-east-1"]]
            p.disabledRules = ["required-tags"]
        },
    ]

    static func contexts(for c: Case) -> [Context] {
        let infracost = Array(#"{"diffTotalMonthlyCost":"1234.5"}"#.utf8)
        return [
            Context(request: c.request ?? "Deploy the web stack for the analytics team", ticket: nil,
                    confirmations: .none, infracost: nil),
            Context(request: "Delete the old dev vpc dev-old-vpc-1 and scale production to 3 instances (i-0abc1234, sg-0123456)",
                    ticket: "CHG-42", confirmations: Confirmations(financeApproved: true), infracost: infracost),
            Context(request: "Replace 2 prod databases in eu-west-1 for the PCI team; créer un bucket", ticket: "  ",
                    confirmations: Confirmations(deletionConfirmed: addresses(c), financeApproved: false,
                                                 securityReviewed: true), infracost: nil),
        ]
    }

    /// The addresses of the plan's changes (to confirm their deletion), or none.
    static func addresses(_ c: Case) -> Set<String> {
        guard let plan = try? Plan.parse(c.plan, format: c.format) else { return [] }
        return Set(plan.changes.map(\.address))
    }

    mutating func collect(shared: String) throws {
        let fm = FileManager.default
        let scenarios = shared + "/fixtures/scenarios"
        for name in try fm.contentsOfDirectory(atPath: scenarios).filter({ $0.hasSuffix(".json") }).sorted() {
            guard let data = fm.contents(atPath: scenarios + "/" + name),
                  let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let req = root["request"] as? [String: Any], let plan = req["plan"] else {
                throw ValidationError("cannot read scenario \(name)")
            }
            let format = try PlanFormat(wireName: req["plan_format"] as? String ?? "")
            add(name, plan, format, request: req["user_request"] as? String)
        }
        let publicPlans = shared + "/fixtures/terraform/public"
        for name in try fm.contentsOfDirectory(atPath: publicPlans).filter({ $0.hasSuffix(".json") }).sorted() {
            guard let data = fm.contents(atPath: publicPlans + "/" + name) else { throw ValidationError("cannot read \(name)") }
            cases.append(Case(label: name + " (as is)", plan: Array(data), format: .terraformJSON, fullContexts: true))
            let root = try JSONSerialization.jsonObject(with: data)
            add(name, root, .terraformJSON, request: nil)
        }
        let decisions = BenchDecisions.generatedPlan(resources: 20)
        cases.append(Case(label: "bench decisions plan", plan: decisions, format: .terraformJSON,
                          fullContexts: true, request: BenchDecisions.userRequest))
        add("bench decisions plan", try JSONSerialization.jsonObject(with: Data(decisions)), .terraformJSON,
            request: BenchDecisions.userRequest)
        let generated = Array(PlanBench.generatedPlan(resources: 30).utf8)
        cases.append(Case(label: "bench policy plan", plan: generated, format: .terraformJSON, fullContexts: true))
        add("bench policy plan", try JSONSerialization.jsonObject(with: Data(generated)), .terraformJSON, request: nil)
        addHostile()
    }

    /// Compact JSON of a value read by JSONSerialization (and edited here), keys sorted: the same
    /// bytes on every run (JSONSerialization's own writer is too slow for thousands of plans).
    static func serialize(_ v: Any) -> [UInt8] {
        var out: [UInt8] = []
        write(v, to: &out)
        return out
    }

    static func write(_ v: Any, to out: inout [UInt8]) {
        if let s = v as? String {
            out.append(0x22)
            for b in s.utf8 {
                switch b {
                case 0x22: out += [0x5C, 0x22]
                case 0x5C: out += [0x5C, 0x5C]
                case 0..<0x20: out += Array(String(format: "\\u%04x", b).utf8)
                default: out.append(b)
                }
            }
            out.append(0x22)
        } else if let o = v as? [String: Any] {
            out.append(0x7B)
            for (i, k) in o.keys.sorted().enumerated() {
                if i > 0 { out.append(0x2C) }
                write(k, to: &out)
                out.append(0x3A)
                write(o[k]!, to: &out)
            }
            out.append(0x7D)
        } else if let a = v as? [Any] {
            out.append(0x5B)
            for (i, x) in a.enumerated() {
                if i > 0 { out.append(0x2C) }
                write(x, to: &out)
            }
            out.append(0x5D)
        } else if v is NSNull {
            out += Array("null".utf8)
        } else if let b = v as? Bool, type(of: v) == Bool.self || String(describing: type(of: v)) == "__NSCFBoolean" {
            out += Array((b ? "true" : "false").utf8)
        } else if let n = v as? NSNumber {
            out += Array(n.stringValue.utf8)
        } else {
            out += Array("\"\(v)\"".utf8)
        }
    }

    /// A value read by JSONSerialization as native dictionaries and arrays (casting a bridged
    /// NSDictionary again for every mutation is what made the corpus slow).
    static func native(_ v: Any) -> Any {
        // Containers first: asking a Swift dictionary `is NSNumber` bridges all of it.
        if let o = v as? [String: Any] { return o.mapValues(native) }
        if let a = v as? [Any] { return a.map(native) }
        return v
    }

    /// A plan, its structural mutations and its byte mutations.
    mutating func add(_ name: String, _ bridged: Any, _ format: PlanFormat, request: String?) {
        let plan = PolicyCorpus.native(bridged)
        let bytes = PolicyCorpus.serialize(plan)
        cases.append(Case(label: name, plan: bytes, format: format, fullContexts: true, request: request))
        // The other format: mostly errors, and their messages.
        let other: PlanFormat = format == .terraformJSON ? .changesetJSON : .terraformJSON
        cases.append(Case(label: name + " as " + other.rawValue, plan: bytes, format: other, fullContexts: false))
        var rng = SplitMix64(seed: UInt64(truncatingIfNeeded: name.utf8.reduce(5381) { ($0 &* 33) &+ Int($1) }))
        for (label, mutated) in PolicyCorpus.structural(plan, format, &rng) {
            cases.append(Case(label: name + " " + label, plan: PolicyCorpus.serialize(mutated), format: format,
                              fullContexts: false, request: request))
        }
        for (label, mutated) in PolicyCorpus.byteMutations(bytes, &rng) {
            cases.append(Case(label: name + " " + label, plan: mutated, format: format, fullContexts: false,
                              request: request))
        }
    }

    // MARK: Structural mutations

    static let interestingTypes = ["aws_security_group", "aws_security_group_rule", "aws_db_instance", "aws_s3_bucket",
                                   "aws_cloudtrail", "aws_instance", "aws_network_acl", "aws_network_acl_rule",
                                   "aws_ebs_volume", "aws_elasticsearch_domain", "aws_db_security_group",
                                   "aws_s3_bucket_server_side_encryption_configuration", "aws_s3_bucket_logging",
                                   "aws_vpc_security_group_ingress_rule", "aws_launch_configuration"]

    static var tagVariants: [[String: Any]] { [
        ["Name": "web-prod", "name": "dev", "Owner": "a", "Environment": "staging", "CostCenter": "c"],
        ["name": "prod-db", "NAME": "dev", "nAme": "x"],
        ["NAME": "audit-log", "Name ": "prod"],
        ["Environment": "non-prod", "Scope": "PCI", "DataClass": "gdpr personal"],
        ["env": "Production", "compliance": "pii", "Owner": NSNull()],
        ["Stage": "prodüktion", "Ümgebung": "live", "Nam\u{0065}\u{0301}": "café-prod"],
        ["Environment": 3, "Owner": ["x"]],
    ] }

    /// A value shaped like a PEM private key, for the secret scan to find. It holds no key, and it
    /// is put together from its parts so that no key-shaped text sits in the source.
    static func pemShaped(body: String) -> String {
        let label = ["RSA", "PRIVATE", "KEY"].joined(separator: " ")
        return "-----BEGIN \(label)-----\n\(body)\n-----END \(label)-----"
    }

    static var afterEdits: [(String, (inout [String: Any]) -> Void)] { [
        ("region us-east-1", { $0["region"] = "us-east-1" }),
        ("region eu", { $0["region"] = "eu-central-1" }),
        ("az", { $0["availability_zone"] = "eu-west-1b"; $0["region"] = NSNull() }),
        ("az odd", { $0["availability_zone"] = "1ab"; $0["region"] = "" }),
        ("password", { $0["password"] = "hunter2"; $0["db_password"] = "${var.x}" }),
        ("token values", { $0["user_data"] = "ghp_abcdefghijklmnopqrstuvwxyz"; $0["note"] = "AKIAABCDEFGHIJKLMNOP"; $0["jwt"] = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijk" }),
        ("pem", { $0["cert"] = pemShaped(body: "MIIEow") }),
        ("secret keys nested", { $0["config"] = [["api_key": "k1", "Secret_Token": ["a", "", "arn:aws:x"]], ["ok": "v"]] }),
        ("ingress open", { $0["ingress"] = [["cidr_blocks": ["10.0.0.0/8", " 0.0.0.0/0 "], "ipv6_cidr_blocks": ["::/0"], "action": "Allow", "cidr": "ANY"]] }),
        ("rule ingress", { $0["type"] = "ingress"; $0["cidr_blocks"] = ["0.0.0.0/0"]; $0["cidr_ipv4"] = "*"; $0["rule_action"] = "allow"; $0["egress"] = false; $0["cidr_block"] = "internet" }),
        ("public db", { $0["publicly_accessible"] = true; $0["public"] = true; $0["storage_encrypted"] = false }),
        ("encryption strings", { $0["storage_encrypted"] = "false"; $0["encrypted"] = "true"; $0["encrypt_at_rest"] = [["enabled": false]] }),
        ("encryption null", { $0["storage_encrypted"] = NSNull(); $0["encrypted"] = NSNull(); $0["server_side_encryption_configuration"] = [Any]() }),
        ("volumes", { $0["root_block_device"] = [["encrypted": false]]; $0["ebs_block_device"] = [["encrypted": true], ["encrypted": false]] }),
        ("logs", { $0["acl"] = "log-delivery-write"; $0["bucket"] = "bucket-1"; $0["logging"] = [Any](); $0["s3_bucket_name"] = "bucket-1"; $0["target_bucket"] = "bucket-2" }),
        ("pci instance", { $0["associate_public_ip_address"] = true; $0["vpc_security_group_ids"] = [Any](); $0["security_groups"] = NSNull(); $0["enabled_cloudwatch_logs_exports"] = NSNull(); $0["tags"] = ["Scope": "pci"] }),
        ("spot", { $0["instance_market_options"] = [["market_type": "spot"]] }),
        ("replica", { $0["replicate_source_db"] = "db-1"; $0["storage_encrypted"] = false }),
        ("names", { $0["name"] = "countersign-ledger"; $0["identifier"] = "prod-é"; $0["bucket"] = "audit-logs"; $0["function_name"] = "Ｐrod" }),
        ("unicode", { $0["description"] = "ca\u{301}fe \u{1F600} \u{0}"; $0["k\u{e9}y"] = "v"; $0["ke\u{301}y"] = "w" }),
        ("long value", { $0["password"] = String(repeating: "x", count: 300); $0["policy"] = String(repeating: "é", count: 250) }),
        ("deep", { v in var d: Any = "password"; for _ in 0..<60 { d = ["password": d] }; v["nested"] = d }),
        ("many keys", { v in for i in 0..<40 { v["k\(i)"] = i } }),
        ("numbers", { $0["size"] = 1.5; $0["big"] = 9_007_199_254_740_993 as Int64; $0["neg"] = -0.0; $0["exp"] = 1e300 }),
        ("tags", { $0["tags"] = tagVariants[0]; $0["tags_all"] = ["Owner": "all", "Team": "t"] }),
        ("no tags", { $0["tags"] = NSNull(); $0["tags_all"] = NSNull() }),
    ] }

    static func structural(_ plan: Any, _ format: PlanFormat, _ rng: inout SplitMix64) -> [(String, Any)] {
        var out: [(String, Any)] = []
        guard let top = plan as? [String: Any] else { return out }
        if format == .changesetJSON {
            for action in ["delete_vpc", "create_instance", "modify", "", "scale_up_prod", "remove-rule", "add rule"] {
                var t = top; t["action"] = action; out.append(("action \(action)", t))
            }
            for key in ["resources", "resources_to_delete", "additional_actions", "segment_name", "action",
                        "cost_increase", "estimated_monthly_cost"] {
                var t = top; t.removeValue(forKey: key); out.append(("drop \(key)", t))
                var u = top; u[key] = 7; out.append(("\(key) number", u))
            }
            var t = top
            t["segment_name"] = "prod-pci-segment"
            t["resources"] = ["instances": ["g5.xlarge x4", "web-prod"], "security_groups": "3 → 18",
                              "buckets": [["name": "audit-log", "count": 2, "encrypted": false, "tags": ["Name": "prod"]]],
                              "cost_increase": 1500, "databases": ["publicly_accessible": true, "region": "us-east-1"]]
            t["resources_to_delete"] = ["dev-old-vpc-1", "prod-db-1", "cloudtrail-main"]
            t["additional_actions"] = ["open_firewall": ["action": "add_rule", "source": "0.0.0.0/0", "direction": "ingress"],
                                       "delete_sg": ["action": "delete"]]
            t["estimated_monthly_cost"] = 2000.5
            out.append(("everything", t))
            var a = t; a["additional_actions"] = [["name": "x", "action": "create"], ["target": "prod-db"], [:], 3]
            out.append(("additional array", a))
            var r = t; r["resources"] = ["db-1 x2", ["id": "i-0abc1234"], 5]
            out.append(("resources array", r))
            return out
        }
        guard let rcs = top["resource_changes"] as? [Any], !rcs.isEmpty else {
            var t = top; t["resource_changes"] = "x"; out.append(("resource_changes string", t))
            return out
        }
        for version in ["1.2", "0.1", "0.0", "2.0", "1", "1.2.3", "1.2.3.4", "a.b", ""] {
            var t = top; t["format_version"] = version; out.append(("version \(version)", t))
        }
        var t0 = top; t0["format_version"] = 1; out.append(("version number", t0))
        var t1 = top; t1.removeValue(forKey: "format_version"); out.append(("no version", t1))
        var t2 = top; t2["resource_changes"] = NSNull(); out.append(("null changes", t2))
        var t3 = top; t3["resource_changes"] = rcs + rcs; out.append(("changes twice", t3))
        var t4 = top
        t4["configuration"] = ["provider_config": ["aws": ["expressions": ["region": ["references": ["var.region", "x"]]]],
                                                   "m:aws": ["expressions": ["region": ["constant_value": "eu-west-3"]]],
                                                   "net.vpc:aws": ["expressions": ["region": ["constant_value": "us-east-2"]]]]]
        t4["variables"] = ["region": ["value": "eu-north-1"]]
        out.append(("provider regions", t4))

        // Resource by resource: every mutation on a few changes.
        let picks = Array(Set((0..<min(rcs.count, 6)).map { _ in rng.below(rcs.count) } + [0, rcs.count - 1])).sorted()
        for i in picks {
            guard let rc = rcs[i] as? [String: Any] else { continue }
            func with(_ label: String, _ edit: (inout [String: Any]) -> Void) {
                var r = rc
                edit(&r)
                var items = rcs
                items[i] = r
                var t = top
                t["resource_changes"] = items
                out.append(("rc[\(i)] \(label)", t))
            }
            func withChange(_ label: String, _ edit: (inout [String: Any]) -> Void) {
                with(label) { r in
                    var c = r["change"] as? [String: Any] ?? [:]
                    edit(&c)
                    r["change"] = c
                }
            }
            func withAfter(_ label: String, _ edit: (inout [String: Any]) -> Void) {
                withChange(label) { c in
                    var a = c["after"] as? [String: Any] ?? [:]
                    edit(&a)
                    c["after"] = a
                }
            }
            for actions: [Any] in [["create"], ["delete"], ["update"], ["delete", "create"], ["create", "delete"],
                                   ["no-op"], ["read"], ["forget"], ["bogus"], [], [1]] {
                withChange("actions \(actions)") { $0["actions"] = actions }
            }
            for key in ["address", "type", "name", "change", "mode", "provider_name", "module_address", "index"] {
                with("drop \(key)") { $0.removeValue(forKey: key) }
                with("\(key) number") { $0[key] = 1 }
                with("\(key) null") { $0[key] = NSNull() }
            }
            with("mode data") { $0["mode"] = "data" }
            with("mode odd") { $0["mode"] = "Managed" }
            with("index string") { $0["index"] = "eu" }
            with("index bool") { $0["index"] = true }
            with("deposed") { $0["deposed"] = "abc123" }
            with("module") { $0["module_address"] = "module.net.module.vpc"; $0["provider_name"] = "registry.terraform.io/hashicorp/aws//" }
            with("change not object") { $0["change"] = ["x"] }
            with("unicode address") { $0["address"] = "aws_instance.prod-é"; $0["name"] = "ca\u{301}fe-prod" }
            for type in interestingTypes {
                with("type \(type)") { $0["type"] = type }
            }
            for key in ["before", "after", "after_unknown", "before_sensitive", "after_sensitive"] {
                withChange("\(key) true") { $0[key] = true }
                withChange("\(key) string") { $0[key] = "x" }
                withChange("\(key) null") { $0[key] = NSNull() }
                withChange("\(key) array") { $0[key] = [true, ["a": true]] }
            }
            withChange("unknown tags") { $0["after_unknown"] = ["tags_all": true, "tags": ["Owner": true]] }
            withChange("sensitive paths") {
                $0["after_sensitive"] = ["password": true, "config": [["api_key": true]], "ingress": [true]]
                $0["before_sensitive"] = ["tags": true]
            }
            withChange("unknown paths") {
                $0["after_unknown"] = ["storage_encrypted": true, "encrypt_at_rest": [["enabled": true]],
                                       "ingress": [["cidr_blocks": [true]]], "region": true]
            }
            withChange("before from after") { $0["before"] = $0["after"]; $0["actions"] = ["delete"] }
            for (n, tags) in tagVariants.enumerated() {
                withAfter("tag variant \(n)") { $0["tags"] = tags }
            }
            for (label, edit) in afterEdits {
                withAfter(label, edit)
            }
            let j = rng.below(interestingTypes.count)
            with("everything as \(interestingTypes[j])") { r in
                r["type"] = interestingTypes[j]
                var c = r["change"] as? [String: Any] ?? [:]
                var a = c["after"] as? [String: Any] ?? [:]
                for (_, edit) in afterEdits where rng.below(3) == 0 { edit(&a) }
                c["after"] = a
                r["change"] = c
            }
        }
        return out
    }

    // MARK: Byte mutations

    static func byteMutations(_ bytes: [UInt8], _ rng: inout SplitMix64) -> [(String, [UInt8])] {
        var out: [(String, [UInt8])] = []
        guard bytes.count > 2 else { return out }
        let inserts: [[UInt8]] = [[0x22], [0x7B], [0x5B], [0x2C], [0x5C], [0xFF], [0xC3], [0xC0, 0xAF], [0xED, 0xA0, 0x80],
                                  [0x31], [0x00], [0x0A], Array(#"\ud800"#.utf8), Array(#"\ud83d\ude00"#.utf8),
                                  Array(#"\u00e9"#.utf8), Array(#"\u0000"#.utf8), Array("é".utf8), Array("e\u{301}".utf8),
                                  Array(#"\x"#.utf8), Array("-".utf8), Array("1e999".utf8), Array("99999999999999999999".utf8)]
        for k in 0..<60 {
            var b = bytes
            let p = rng.below(b.count)
            switch k % 5 {
            case 0: b.remove(at: p)
            case 1: b.insert(contentsOf: inserts[rng.below(inserts.count)], at: p)
            case 2: b[p] = inserts[rng.below(inserts.count)][0]
            case 3:
                let len = 1 + rng.below(min(60, b.count - p))
                b.insert(contentsOf: b[p..<(p + len)], at: p)
            default: b = Array(b[..<p])
            }
            out.append(("bytes \(k)", b))
        }
        // Duplicate keys, at several depths.
        let text = bytes
        for key in [#""address":"#, #""type":"#, #""Name":"#, #""tags":"#, #""after":"#, #""action":"#, #""format_version":"#] {
            let k = Array(key.utf8)
            if let at = firstIndex(of: k, in: text) {
                var b = text
                b.insert(contentsOf: k + Array(#""dup","#.utf8), at: at)
                out.append(("duplicate \(key)", b))
            }
        }
        // Strings with escapes and non-ASCII bytes where a string starts.
        for (label, piece) in [("escaped", #"\u0041\n\t\"\\\/"#), ("nonascii", "é\u{301}日本"), ("surrogates", #"\ud83d\ude00"#)] {
            if let at = firstIndex(of: Array(#"":""#.utf8), in: text) {
                var b = text
                b.insert(contentsOf: Array(piece.utf8), at: at + 3)
                out.append((label, b))
            }
        }
        // Nesting at the limit and beyond, around the whole plan and inside it.
        for depth in [126, 127, 128, 129] {
            out.append(("wrapped \(depth)", Array(repeating: 0x5B, count: depth) + bytes + Array(repeating: 0x5D, count: depth)))
        }
        if let at = firstIndex(of: Array(#""after":"#.utf8), in: text) {
            for depth in [100, 120, 130] {
                var b = text
                b.insert(contentsOf: Array(#""deep":"#.utf8) + Array(repeating: 0x5B, count: depth)
                         + Array(repeating: 0x5D, count: depth) + [0x2C], at: at)
                out.append(("deep \(depth)", b))
            }
        }
        out.append(("whitespace", [0x20, 0x0A] + bytes + [0x09, 0x0D]))
        out.append(("trailing", bytes + [0x20, 0x7B, 0x7D]))
        return out
    }

    static func firstIndex(of needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard needle.count <= hay.count else { return nil }
        for i in 0...(hay.count - needle.count) where hay[i] == needle[0] && Array(hay[i..<(i + needle.count)]) == needle {
            return i
        }
        return nil
    }

    mutating func addHostile() {
        let texts: [String] = [
            "", " ", "null", "[]", "{}", "0", "-", "-0", "01", "1.", "1e", "\"x\"", "{\"a\":1,\"a\":2}",
            #"{"format_version":"1.2","resource_changes":[]}"#,
            #"{"format_version":"1.2","resource_changes":{}}"#,
            #"{"format_version":"1.2","resource_changes":[1,null,{}]}"#,
            #"{"format_version":"1.2","resource_changes":[{"address":"a","type":"t","name":"n","change":{"actions":["create"],"after":{"tags":{"Name":"prod","name":"dev"}}}}]}"#,
            #"{"format_version":"1.2","resource_changes":[{"address":"a","type":"t","name":"n","change":{"actions":["create"],"after":{"tags":{"NAME":"prod","name":"dev","nAmE":"x"}}}}]}"#,
            #"{"format_version":"1.2","resource_changes":[{"address":"a","type":"t","name":"n","change":{"actions":["create"],"after":{"tags":{"Nam\u0065\u0301":"prod"}}}}]}"#,
            #"{"format_version":"1.2","resource_changes":[{"address":"a","type":"t","name":"n","change":{"actions":["create"],"after":{"k\u00e9":1,"ke\u0301":2}}}]}"#,
            #"{"format_version":"1.2","resource_changes":[{"address":"a","type":"t","name":"n","change":{"actions":["create"],"after":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"a":18}}}]}"#,
            #"{"format_version":"1.2","resource_changes":[{"address":"a","type":"t","name":"n","change":{"actions":["create"],"after":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"p":17}}}]}"#,
            #"{"format_version":"1.2","resource_changes":[{"address":"a","type":"t","name":"n","change":{"actions":["create"],"after":{"x":9223372036854775807,"y":-9223372036854775808,"z":1.7976931348623157e308}}}]}"#,
            #"{"format_version":"1.2","resource_changes":[{"address":"a","type":"t","name":"n","change":{"actions":["create"],"after":{"x":9223372036854775808}}}]}"#,
            #"{"format_version":"1.2","resource_changes":[{"address":"a","type":"t","name":"n","change":{"actions":["create"],"after":{"x":1e400}}}]}"#,
            #"{"action":"create_microsegment","segment_name":"pci-prod","resources":{"instances":["web x3"]}}"#,
            #"{"action":"delete","resources_to_delete":["a",""]}"#,
            #"{"action":"delete","resources_to_delete":"a"}"#,
        ]
        for (i, t) in texts.enumerated() {
            for format in PlanFormat.allCases {
                cases.append(Case(label: "hostile \(i)", plan: Array(t.utf8), format: format, fullContexts: false))
            }
        }
        var big = Array(#"{"format_version":"1.2","resource_changes":["#.utf8)
        for i in 0..<3000 {
            if i > 0 { big.append(0x2C) }
            big += Array(#"{"address":"aws_instance.r\#(i)","type":"aws_instance","name":"r\#(i)","change":{"actions":["create"],"after":{"tags":{"Name":"prod-\#(i)"}}}}"#.utf8)
        }
        big += Array("]}".utf8)
        cases.append(Case(label: "3000 changes", plan: big, format: .terraformJSON, fullContexts: false))
        let tooLarge = [UInt8](repeating: 0x20, count: (16 << 20) + 1)
        cases.append(Case(label: "too large", plan: tooLarge, format: .terraformJSON, fullContexts: false))
        cases.append(Case(label: "invalid utf8 key", plan: [0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D], format: .terraformJSON,
                          fullContexts: false))
    }

    // MARK: The dump

    struct Dump {
        var text = ""
        var evaluations = 0

        mutating func line(_ s: String) {
            text += s
            text += "\n"
        }

        mutating func parse(_ bytes: [UInt8], _ format: PlanFormat) {
            do {
                let plan = try Plan.parse(bytes, format: format)
                line("plan \(plan.format.rawValue) v=\(plan.formatVersion ?? "nil") cost=\(plan.costIncreaseMonthly.map { "\($0)" } ?? "nil") primary=\(plan.primaryAction ?? "nil") changes=\(plan.changes.count)")
                for c in plan.changes {
                    line("  change \(c.address.debugDescription) module=\(c.module?.debugDescription ?? "nil") type=\(c.type.debugDescription) name=\(c.name.debugDescription) index=\(c.index?.debugDescription ?? "nil") deposed=\(c.deposed?.debugDescription ?? "nil") mode=\(c.mode) provider=\(c.provider.debugDescription) actions=\(c.actions.map(\.rawValue)) region=\(c.region?.debugDescription ?? "nil") carriesTags=\(c.carriesTags) additional=\(c.isAdditionalAction) count=\(c.count)")
                    line("    tags \(c.tags.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }.map { "\($0.key.debugDescription)=\($0.value.debugDescription)" })")
                    line("    unknown \(c.unknownPaths) sensitive \(c.sensitivePaths)")
                }
            } catch {
                line("parse error \(PolicyCorpus.Dump.describe(error))")
            }
        }

        mutating func evaluate(_ engine: PolicyEngine, _ req: EvaluationRequest, _ confirmations: Confirmations) {
            evaluations += 1
            do {
                let d = try engine.evaluate(req, confirmations: confirmations)
                line("verdict \(d.verdict.rawValue) cannotOverride=\(d.cannotOverride) rules=\(d.rules)")
                for f in d.findings {
                    line("  finding \(f.rule) \(f.enforcement) \(f.address.debugDescription) \(f.path.debugDescription) by=\(f.overridableBy)")
                    line("    message \(f.message.debugDescription)")
                    line("    remedy \(f.remedy.debugDescription)")
                    line("    before \(f.before?.debugDescription ?? "nil") after \(f.after?.debugDescription ?? "nil")")
                }
                line("  summary \(d.summary.debugDescription)")
                line("  planned \(d.plannedChanges.map { "\($0.address)=\($0.action)" })")
                line("  sha plan=\(Hex.encode(d.planSHA256)) request=\(Hex.encode(d.userRequestSHA256)) policy=\(Hex.encode(d.policySHA256)) id=\(d.requestID)")
            } catch {
                line("error \(PolicyCorpus.Dump.describe(error))")
            }
        }

        /// The error as a client sees it (code, message, cause), without where it was raised.
        static func describe(_ error: any Error) -> String {
            guard let e = error as? PolicyError else { return "\(type(of: error)) \(error)" }
            return "\(e.code) \(e.message.debugDescription) cause=\(e.cause?.debugDescription ?? "nil") grpc=\(e.grpcStatusName)"
        }
    }
}
