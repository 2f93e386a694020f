/// The environment a resource belongs to, as far as the plan shows it.
public enum EnvironmentClass: String, Sendable, Hashable {
    case production
    case nonProduction = "non-production"
    case unknown
}

/// Data scopes that carry their own rules.
public enum DataScope: String, Sendable, Hashable, CaseIterable {
    /// `Scope=PCI` (or `pci` as a whole word in a name).
    case pci
    /// `DataClass=gdpr|personal` (or `gdpr` as a whole word in a name).
    case gdpr
}

/// What names and tags say about a resource under one policy. Built once per engine: it holds
/// the policy's word and key tables in the forms the per-resource checks read without hashing
/// or allocating.
struct Classifier: Sendable {
    let policy: Policy
    private let prodWords: Set<String>
    private let envKeys: LowercasedKeySet
    /// Every word the classification compares whole, with what it means.
    private let words: WordTable
    /// `policy.protectedNames` and `policy.auditResourceTypes`, lower-cased for `globMatchBytes`.
    let protectedPatterns: [GlobPattern]
    let auditTypePatterns: [[UInt8]]
    static let nonProdWords: Set<String> = ["dev", "development", "test", "testing", "staging", "stage", "qa",
                                            "sandbox", "nonprod", "nonproduction", "uat", "preprod", "demo", "lab"]

    init(policy: Policy) {
        self.policy = policy
        self.prodWords = Set(policy.productionWords.map { $0.lowercased() })
        self.envKeys = LowercasedKeySet(Set(policy.environmentTagKeys.map { $0.lowercased() }))
        var table: [(String, UInt8)] = prodWords.map { ($0, WordFlags.production) }
        table += Classifier.nonProdWords.map { ($0, WordFlags.nonProduction) }
        table += [("non", WordFlags.non), ("pci", WordFlags.pci), ("gdpr", WordFlags.gdpr),
                  ("personal", WordFlags.personal), ("pii", WordFlags.pii)]
        self.words = WordTable(table)
        self.protectedPatterns = policy.protectedNames.map { GlobPattern(lowerBytes($0)) }
        self.auditTypePatterns = policy.auditResourceTypes.map(lowerBytes)
    }

    /// True when `words` contain a production word as a whole word, not preceded by "non"
    /// (`non-prod` is not production; neither is `nonprod-ml`).
    func hasProductionWord(_ words: [String]) -> Bool {
        for (i, w) in words.enumerated() where prodWords.contains(w) {
            if i > 0 && words[i - 1] == "non" { continue }
            return true
        }
        return false
    }

    func hasNonProductionWord(_ words: [String]) -> Bool {
        if words.contains(where: { Classifier.nonProdWords.contains($0) }) { return true }
        for (i, w) in words.enumerated() where prodWords.contains(w) && i > 0 && words[i - 1] == "non" { return true }
        return false
    }

    /// What the words of `text` (as ``wordsOf(_:)`` splits them) say: `production` is
    /// ``hasProductionWord(_:)`` of them, `nonProduction` ``hasNonProductionWord(_:)``.
    func summarize(_ text: String) -> WordSummary {
        if let ascii = text.utf8.withContiguousStorageIfAvailable({ summarizeASCII($0) }), let summary = ascii {
            return summary
        }
        var out = WordSummary()
        var previousIsNon = false
        for w in wordsOf(text) {
            let f = words.flags(of: w)
            out.add(f, previousIsNon: previousIsNon)
            previousIsNon = f & WordFlags.non != 0
        }
        return out
    }

    /// ``summarize(_:)`` of ASCII text without making its words; nil when the text is not ASCII.
    private func summarizeASCII(_ text: UnsafeBufferPointer<UInt8>) -> WordSummary? {
        var nonASCII: UInt8 = 0
        for b in text { nonASCII |= b }
        guard nonASCII < 0x80 else { return nil }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: text.count) { lowered in
            // As the ASCII path of wordsOf: A-Z lower-cased, words of a-z and 0-9.
            for (i, b) in text.enumerated() { lowered[i] = b >= 0x41 && b <= 0x5A ? b + 0x20 : b }
            var out = WordSummary()
            var previousIsNon = false
            var i = 0
            let n = text.count
            while i < n {
                let b = lowered[i]
                guard (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) else { i += 1; continue }
                let start = i
                while i < n, (lowered[i] >= 0x61 && lowered[i] <= 0x7A) || (lowered[i] >= 0x30 && lowered[i] <= 0x39) { i += 1 }
                let f = words.flags(ofLowercasedASCII: UnsafeBufferPointer(rebasing: lowered[start..<i]))
                out.add(f, previousIsNon: previousIsNon)
                previousIsNon = f & WordFlags.non != 0
            }
            return out
        }
    }

    /// The value of the resource's Name tag (key compared case-insensitively), if any. With more
    /// than one such key ("Name" and "name"), `Name` wins, else the first key in byte order: the
    /// same plan must always be classified the same way, on every node.
    static func nameTag(_ c: ResourceChange) -> String? {
        if let exact = c.tag("Name") { return exact }
        var best: (key: String, value: String)?
        for (k, v) in c.tags where isName(k) {
            if let b = best, !k.utf8.lexicographicallyPrecedes(b.key.utf8) { continue }
            best = (k, v)
        }
        return best?.value
    }

    /// `key.lowercased() == "name"`.
    static func isName(_ key: String) -> Bool {
        let ascii = key.utf8.withContiguousStorageIfAvailable { u -> Bool? in
            guard u.count == 4 else { return u.allSatisfy { $0 < 0x80 } ? false : nil }
            guard u[0] < 0x80, u[1] < 0x80, u[2] < 0x80, u[3] < 0x80 else { return nil }
            return u[0] | 0x20 == UInt8(ascii: "n") && u[1] | 0x20 == UInt8(ascii: "a")
                && u[2] | 0x20 == UInt8(ascii: "m") && u[3] | 0x20 == UInt8(ascii: "e")
        }
        if let ascii, let result = ascii { return result }
        return key.lowercased() == "name"
    }

    static let scopeKeys = LowercasedKeySet(["scope", "dataclass", "data_class", "dataclassification", "compliance"])

    /// Environment and data scopes in one pass over the names.
    func classify(_ c: ResourceChange) -> (EnvironmentClass, Set<DataScope>) {
        var scopes = Set<DataScope>()
        var env = EnvironmentClass.unknown
        for (k, v) in c.tags {
            let isEnv = envKeys.containsLowercased(k)
            let isScope = Classifier.scopeKeys.containsLowercased(k)
            guard isEnv || isScope else { continue }
            let words = summarize(v)
            if isEnv {
                if words.production { env = .production } else if env == .unknown { env = .nonProduction }
            }
            if isScope {
                if words.contains(WordFlags.pci) { scopes.insert(.pci) }
                if words.contains(WordFlags.gdpr | WordFlags.personal | WordFlags.pii) { scopes.insert(.gdpr) }
            }
        }
        func name(_ n: String) {
            let words = summarize(n)
            if env != .production {
                if words.production { env = .production } else if words.nonProduction { env = .nonProduction }
            }
            if words.contains(WordFlags.pci) { scopes.insert(.pci) }
            if words.contains(WordFlags.gdpr) { scopes.insert(.gdpr) }
        }
        name(c.address)
        name(c.name)
        for n in c.contextNames { name(n) }
        if let n = Classifier.nameTag(c) { name(n) }
        return (env, scopes)
    }
}

/// What a word of a name means to the classification (bits of ``WordTable`` entries).
enum WordFlags {
    static let production: UInt8 = 1
    static let nonProduction: UInt8 = 2
    static let non: UInt8 = 4
    static let pci: UInt8 = 8
    static let gdpr: UInt8 = 16
    static let personal: UInt8 = 32
    static let pii: UInt8 = 64
}

/// What the words of one text say, read in one pass.
struct WordSummary {
    /// A production word not preceded by "non".
    var production = false
    /// A non-production word, or a production word preceded by "non".
    var nonProduction = false
    /// The union of the words' ``WordFlags``.
    var flags: UInt8 = 0

    mutating func add(_ f: UInt8, previousIsNon: Bool) {
        flags |= f
        if f & WordFlags.production != 0 {
            if previousIsNon { nonProduction = true } else { production = true }
        }
        if f & WordFlags.nonProduction != 0 { nonProduction = true }
    }

    /// True when some word has one of `flags`.
    func contains(_ flags: UInt8) -> Bool { self.flags & flags != 0 }
}

/// Whole words and their ``WordFlags``, compared with `String` equality.
struct WordTable: Sendable {
    private let flags: [String: UInt8]
    /// `lengths[b]` has bit `min(n, 63)` set when an entry of n UTF-8 bytes starts with byte b: most
    /// words of a name are ruled out from it without making a `String` to look up. Nil when an
    /// entry is not ASCII (an ASCII word could then equal it with different bytes).
    private let lengths: [UInt64]?

    init(_ entries: [(String, UInt8)]) {
        var flags: [String: UInt8] = [:]
        for (word, f) in entries { flags[word, default: 0] |= f }
        self.flags = flags
        var lengths = [UInt64](repeating: 0, count: 256)
        var ascii = true
        for word in flags.keys {
            let u = Array(word.utf8)
            guard let first = u.first, u.allSatisfy({ $0 < 0x80 }) else { ascii = false; break }
            lengths[Int(first)] |= 1 << UInt64(min(u.count, 63))
        }
        self.lengths = ascii ? lengths : nil
    }

    func flags(of word: String) -> UInt8 { flags[word] ?? 0 }

    /// ``flags(of:)`` of a non-empty ASCII word.
    func flags(ofLowercasedASCII word: UnsafeBufferPointer<UInt8>) -> UInt8 {
        if let lengths, lengths[Int(word[0])] & (1 << UInt64(min(word.count, 63))) == 0 { return 0 }
        return flags[String(decoding: word, as: UTF8.self)] ?? 0
    }
}

/// A set of lower-case keys, asked whether it holds `key.lowercased()` without lower-casing or
/// hashing when the key is ASCII.
struct LowercasedKeySet: Sendable {
    let keys: Set<String>
    /// The keys' bytes; nil when a key is not ASCII (then only `String` equality decides).
    private let ascii: [[UInt8]]?

    init(_ keys: Set<String>) {
        self.keys = keys
        let bytes = keys.map { Array($0.utf8) }
        ascii = bytes.allSatisfy { $0.allSatisfy { $0 < 0x80 } } ? bytes : nil
    }

    /// `keys.contains(key.lowercased())`.
    func containsLowercased(_ key: String) -> Bool {
        if let ascii, let fast = key.utf8.withContiguousStorageIfAvailable({ u -> Bool? in
            var high: UInt8 = 0
            for b in u { high |= b }
            guard high < 0x80 else { return nil }
            return ascii.contains { k in
                guard k.count == u.count else { return false }
                for i in 0..<k.count where k[i] != (u[i] >= 0x41 && u[i] <= 0x5A ? u[i] + 0x20 : u[i]) { return false }
                return true
            }
        }), let result = fast {
            return result
        }
        return keys.contains(key.lowercased())
    }
}
