/// Classes of verbs the intent check reads from a request.
enum VerbClass: String, Sendable, Hashable, CaseIterable {
    case create, delete, isolate, block, scale, modify, replace

    static let table: [String: VerbClass] = {
        var t: [String: VerbClass] = [:]
        for w in ["add", "create", "deploy", "provision", "launch", "new", "build", "spin", "setup", "stand",
                  "establish", "introduce", "allocate", "install", "onboard"] { t[w] = .create }
        for w in ["delete", "remove", "destroy", "decommission", "teardown", "tear", "clean", "cleanup", "drop",
                  "terminate", "purge", "retire", "deprovision", "prune", "wipe", "nuke", "delete", "deletion"] { t[w] = .delete }
        for w in ["isolate", "quarantine", "contain", "cordon", "segregate"] { t[w] = .isolate }
        for w in ["block", "deny", "ban", "blacklist", "blocklist", "blackhole"] { t[w] = .block }
        for w in ["scale", "resize", "grow", "increase", "shrink", "expand", "upsize", "downsize", "double", "triple"] { t[w] = .scale }
        for w in ["modify", "update", "change", "patch", "upgrade", "rotate", "tag", "enable", "disable", "allow",
                  "open", "configure", "rename", "move", "migrate", "fix", "adjust", "restrict", "set", "attach",
                  "detach"] { t[w] = .modify }
        for w in ["replace", "recreate", "rebuild", "redeploy", "reprovision"] { t[w] = .replace }
        return t
    }()

    static func of(_ word: String) -> VerbClass? { table[word] }
}

/// Resource nouns the intent check counts.
enum Noun: String, Sendable, Hashable {
    case instance, database, bucket, segment, vpc, securityGroup = "security group", subnet, cluster, rule

    static let table: [String: Noun] = [
        "instance": .instance, "instances": .instance, "vm": .instance, "vms": .instance, "server": .instance,
        "servers": .instance, "ec2": .instance,
        "database": .database, "databases": .database, "db": .database, "dbs": .database, "rds": .database,
        "bucket": .bucket, "buckets": .bucket,
        "segment": .segment, "segments": .segment, "microsegment": .segment, "microsegments": .segment,
        "vpc": .vpc, "vpcs": .vpc,
        "sg": .securityGroup, "sgs": .securityGroup,
        "subnet": .subnet, "subnets": .subnet,
        "cluster": .cluster, "clusters": .cluster,
        "rule": .rule, "rules": .rule,
    ]

    /// The noun a resource type counts as, if any.
    static func of(type: String) -> Noun? {
        switch type {
        case "aws_instance", "instance", "google_compute_instance", "azurerm_linux_virtual_machine",
             "azurerm_windows_virtual_machine": return .instance
        case "aws_db_instance", "aws_rds_cluster", "database", "aws_docdb_cluster", "aws_neptune_cluster": return .database
        case "aws_s3_bucket", "bucket": return .bucket
        case "segment": return .segment
        case "aws_vpc", "vpc": return .vpc
        case "aws_security_group", "security_group": return .securityGroup
        case "aws_subnet", "subnet": return .subnet
        default:
            if type.hasSuffix("_cluster") || type == "cluster" { return .cluster }
            if type.hasSuffix("_rule") { return .rule }
            return nil
        }
    }
}

/// What the person's request asks for, read deterministically.
struct RequestIntent: Sendable {
    var words: [String]
    var verbs: Set<VerbClass>
    var mentionsProduction: Bool
    var mentionsNonProduction: Bool
    /// Ids named in the request (`i-0abc123`, `sg-…`, IP addresses, ARNs), normalised to lowercase
    /// letters and digits.
    var namedIDs: [String]
    /// Counts the request states ("a database", "two instances").
    var counts: [Noun: Int]
    /// Content words (not verbs, not stop words) for relating extra actions to the request.
    var contentWords: Set<String>

    static let stopWords: Set<String> = ["a", "an", "the", "for", "to", "of", "in", "on", "at", "by", "with", "from",
                                         "and", "or", "our", "my", "your", "this", "that", "these", "those", "it",
                                         "its", "is", "are", "be", "up", "down", "out", "all", "some", "any", "new",
                                         "old", "please", "can", "you", "we", "i", "me", "us", "into", "via",
                                         "flagged", "handle", "so", "as", "then", "also"]
    static let countWords: [String: Int] = ["a": 1, "an": 1, "one": 1, "single": 1, "two": 2, "three": 3, "four": 4,
                                            "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10]
    static let prepositions: Set<String> = ["for", "in", "with", "to", "from", "of", "on", "at", "and", "or", "by", "into"]

    init(_ text: String, classifier: Classifier) {
        words = wordsOf(text)
        verbs = Set(words.compactMap(VerbClass.of))
        mentionsProduction = classifier.hasProductionWord(words)
        mentionsNonProduction = classifier.hasNonProductionWord(words)
        contentWords = Set(words.filter { !RequestIntent.stopWords.contains($0) && VerbClass.of($0) == nil && $0.count > 1 })

        // Tokens split on whitespace keep ids and IP addresses whole.
        let tokens = RequestIntent.tokens(text)
        var ids: [String] = []
        for t in tokens where RequestIntent.isID(t) {
            ids.append(normalise(t))
        }
        namedIDs = ids

        var counts: [Noun: Int] = [:]
        for (i, t) in tokens.enumerated() {
            let n: Int?
            if let w = RequestIntent.countWords[t] { n = w } else if let d = Int(t), d > 0, d < 100_000 { n = d } else { n = nil }
            guard let count = n else { continue }
            var j = i + 1
            while j < tokens.count && j <= i + 4 {
                let tok = tokens[j]
                if RequestIntent.prepositions.contains(tok) { break }
                if tok == "security", j + 1 < tokens.count, tokens[j + 1].hasPrefix("group") {
                    counts[.securityGroup, default: 0] += count; break
                }
                if let noun = Noun.table[tok] { counts[noun, default: 0] += count; break }
                j += 1
            }
        }
        self.counts = counts
    }

    /// The request lower-cased, split on whitespace, each piece trimmed of `,;:()"'!?` (and of
    /// trailing dots); pieces trimmed to nothing are kept.
    static func tokens(_ text: String) -> [String] {
        // ASCII: every character but CR LF is one byte, and CR and LF are both whitespace.
        if let ascii = text.utf8.withContiguousStorageIfAvailable({ u -> [String]? in
            guard u.allSatisfy({ $0 < 0x80 }) else { return nil }
            func isSpace(_ b: UInt8) -> Bool { b == 0x20 || (b >= 0x09 && b <= 0x0D) }
            func isTrimmed(_ b: UInt8) -> Bool {
                switch b {
                case UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: ":"), UInt8(ascii: "("), UInt8(ascii: ")"),
                     UInt8(ascii: "\""), UInt8(ascii: "'"), UInt8(ascii: "!"), UInt8(ascii: "?"): return true
                default: return false
                }
            }
            var out: [String] = []
            var i = 0
            while i < u.count {
                if isSpace(u[i]) { i += 1; continue }
                var start = i
                while i < u.count, !isSpace(u[i]) { i += 1 }
                var end = i
                while start < end, isTrimmed(u[start]) { start += 1 }
                while start < end, u[end - 1] == UInt8(ascii: ".") || isTrimmed(u[end - 1]) { end -= 1 }
                out.append(String(unsafeUninitializedCapacity: end - start) { buffer in
                    for j in start..<end { buffer[j - start] = u[j] >= 0x41 && u[j] <= 0x5A ? u[j] + 0x20 : u[j] }
                    return end - start
                })
            }
            return out
        }), let tokens = ascii {
            return tokens
        }
        return tokensReference(text)
    }

    /// The definition of ``tokens(_:)``, on characters.
    static func tokensReference(_ text: String) -> [String] {
        text.lowercased().split(whereSeparator: { $0.isWhitespace }).map {
            $0.trimmingCharacters(in: ",;:()\"'!?")
        }
    }

    static func isID(_ t: String) -> Bool {
        if let ascii = t.utf8.withContiguousStorageIfAvailable(isASCIIID), let result = ascii { return result }
        return isIDReference(t)
    }

    /// The definition of ``isID(_:)``, on characters.
    static func isIDReference(_ t: String) -> Bool {
        if t.hasPrefix("arn:") { return true }
        // IPv4 address or CIDR.
        let ipPart = t.split(separator: "/").first.map(String.init) ?? t
        let octets = ipPart.split(separator: ".", omittingEmptySubsequences: false)
        if octets.count == 4 && octets.allSatisfy({ o in !o.isEmpty && o.count <= 3 && o.allSatisfy(\.isNumber) }) { return true }
        // Cloud ids such as i-0abc123, sg-0123abcd, vpc-0a1b2c3d.
        let parts = t.split(separator: "-", omittingEmptySubsequences: false)
        if parts.count == 2, (1...8).contains(parts[0].count), parts[0].allSatisfy(\.isLetter),
           parts[1].count >= 6, parts[1].allSatisfy(\.isHexDigit), parts[1].contains(where: \.isNumber) { return true }
        return false
    }

    /// ``isID(_:)`` of a token of printable ASCII, where a character is a byte, a letter is A-Z or
    /// a-z, a number 0-9 and a hex digit 0-9, A-F or a-f; nil for any other token.
    static func isASCIIID(_ t: UnsafeBufferPointer<UInt8>) -> Bool? {
        guard t.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else { return nil }
        func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
        func isLetter(_ b: UInt8) -> Bool { (b | 0x20) >= 0x61 && (b | 0x20) <= 0x7A }
        func isHex(_ b: UInt8) -> Bool { isDigit(b) || ((b | 0x20) >= 0x61 && (b | 0x20) <= 0x66) }
        if t.count >= 4, t[0] == UInt8(ascii: "a"), t[1] == UInt8(ascii: "r"), t[2] == UInt8(ascii: "n"),
           t[3] == UInt8(ascii: ":") { return true }
        // IPv4 address or CIDR: the first non-empty piece between slashes (the whole token if none).
        var ipStart = 0
        while ipStart < t.count, t[ipStart] == UInt8(ascii: "/") { ipStart += 1 }
        var ipEnd = ipStart
        while ipEnd < t.count, t[ipEnd] != UInt8(ascii: "/") { ipEnd += 1 }
        if ipStart == t.count { ipStart = 0; ipEnd = t.count }
        var octets = 0
        var octetLength = 0
        var octetsValid = true
        for p in ipStart...ipEnd {
            if p == ipEnd || t[p] == UInt8(ascii: ".") {
                octets += 1
                if octetLength == 0 || octetLength > 3 { octetsValid = false }
                octetLength = 0
            } else {
                if !isDigit(t[p]) { octetsValid = false }
                octetLength += 1
            }
        }
        if octets == 4 && octetsValid { return true }
        // Cloud ids such as i-0abc123, sg-0123abcd, vpc-0a1b2c3d.
        guard let dash = t.firstIndex(of: UInt8(ascii: "-")), t[(dash + 1)...].firstIndex(of: UInt8(ascii: "-")) == nil else {
            return false
        }
        let kind = t[..<dash]
        let id = t[(dash + 1)...]
        return (1...8).contains(kind.count) && kind.allSatisfy(isLetter)
            && id.count >= 6 && id.allSatisfy(isHex) && id.contains(where: isDigit)
    }
}

func normalise(_ s: String) -> String {
    String(String.UnicodeScalarView(s.lowercased().unicodeScalars.filter { ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") }))
}

extension StringProtocol {
    func trimmingCharacters(in chars: String) -> String {
        var s = Substring(self)
        while let f = s.first, chars.contains(f) { s = s.dropFirst() }
        while let l = s.last, l == "." || chars.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

// MARK: - Reviewer seam

/// What a reviewer model is shown: the person's words, the owner and the findings so far. The
/// plan bytes are the caller's to add (redacted) if the reviewer needs them.
public struct ReviewRequest: Sendable, Hashable {
    public var requestID: String
    public var userRequest: String
    public var owner: String
    public var planSHA256Hex: String
    /// The engine's decision before review.
    public var verdict: Verdict
    /// The engine's findings before review.
    public var findings: [Finding]
    /// The engine's summary before review.
    public var summary: String
}

/// A reviewer model's opinion.
public struct ReviewOpinion: Sendable, Hashable {
    /// What the reviewer would decide.
    public var verdict: Verdict
    /// Why, in one or two sentences (shown to people; never trusted by any rule).
    public var reason: String
    public init(verdict: Verdict, reason: String) {
        self.verdict = verdict
        self.reason = reason
    }
}

/// An optional second opinion (Anthropic Messages API, or an OpenAI-compatible local endpoint):
/// implementations live outside this module. It can only make a decision stricter: see
/// ``Decision/applying(review:)`` and ``Decision/applyingReviewerFailure(_:)``.
public protocol PlanReviewer: Sendable {
    /// Reviews a decision.
    /// - Throws: any error; the caller then applies ``Decision/applyingReviewerFailure(_:)``, which escalates.
    func review(_ request: ReviewRequest) async throws -> ReviewOpinion
}
