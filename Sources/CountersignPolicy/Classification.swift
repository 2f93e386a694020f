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

struct Classifier {
    let policy: Policy
    private let prodWords: Set<String>
    private let envKeys: Set<String>
    static let nonProdWords: Set<String> = ["dev", "development", "test", "testing", "staging", "stage", "qa",
                                            "sandbox", "nonprod", "nonproduction", "uat", "preprod", "demo", "lab"]

    init(policy: Policy) {
        self.policy = policy
        self.prodWords = Set(policy.productionWords.map { $0.lowercased() })
        self.envKeys = Set(policy.environmentTagKeys.map { $0.lowercased() })
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

    /// The names a resource is known by: address, name, identifiers, the Name tag, segment names.
    func names(_ c: ResourceChange) -> [String] {
        var out = [c.address, c.name] + c.contextNames
        if let n = c.tags.first(where: { $0.key.lowercased() == "name" })?.value { out.append(n) }
        return out
    }

    /// The environment from the plan alone (tags first, then names).
    func environment(_ c: ResourceChange) -> EnvironmentClass {
        var sawNonProd = false
        for (k, v) in c.tags where envKeys.contains(k.lowercased()) {
            let words = wordsOf(v)
            if hasProductionWord(words) { return .production }
            sawNonProd = true
        }
        for n in names(c) {
            let words = wordsOf(n)
            if hasProductionWord(words) { return .production }
            if hasNonProductionWord(words) { sawNonProd = true }
        }
        return sawNonProd ? .nonProduction : .unknown
    }

    static let scopeKeys: Set<String> = ["scope", "dataclass", "data_class", "dataclassification", "compliance"]

    /// Environment and data scopes in one pass over the names.
    func classify(_ c: ResourceChange) -> (EnvironmentClass, Set<DataScope>) {
        var scopes = Set<DataScope>()
        var env = EnvironmentClass.unknown
        for (k, v) in c.tags {
            let key = k.lowercased()
            let isEnv = envKeys.contains(key)
            let isScope = Classifier.scopeKeys.contains(key)
            guard isEnv || isScope else { continue }
            let words = wordsOf(v)
            if isEnv {
                if hasProductionWord(words) { env = .production } else if env == .unknown { env = .nonProduction }
            }
            if isScope {
                if words.contains("pci") { scopes.insert(.pci) }
                if words.contains("gdpr") || words.contains("personal") || words.contains("pii") { scopes.insert(.gdpr) }
            }
        }
        for n in names(c) {
            let words = wordsOf(n)
            if env != .production {
                if hasProductionWord(words) { env = .production } else if hasNonProductionWord(words) { env = .nonProduction }
            }
            if words.contains("pci") { scopes.insert(.pci) }
            if words.contains("gdpr") { scopes.insert(.gdpr) }
        }
        return (env, scopes)
    }

    func scopes(_ c: ResourceChange) -> Set<DataScope> {
        var out = Set<DataScope>()
        for (k, v) in c.tags {
            let key = k.lowercased()
            guard ["scope", "dataclass", "data_class", "dataclassification", "compliance"].contains(key) else { continue }
            let words = Set(wordsOf(v))
            if words.contains("pci") { out.insert(.pci) }
            if words.contains("gdpr") || words.contains("personal") || words.contains("pii") { out.insert(.gdpr) }
        }
        for n in names(c) {
            let words = Set(wordsOf(n))
            if words.contains("pci") { out.insert(.pci) }
            if words.contains("gdpr") { out.insert(.gdpr) }
        }
        return out
    }
}
