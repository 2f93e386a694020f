/// Redaction of sensitive and secret-looking values before they appear in a finding or a log.
enum Redactor {
    static let secretKeyFragments = ["password", "passwd", "secret", "token", "private_key", "privatekey",
                                     "access_key", "accesskey", "api_key", "apikey", "credential", "passphrase",
                                     "auth_key", "client_key", "connection_string"]

    static func isSecretKey(_ key: String) -> Bool {
        let k = key.lowercased()
        return secretKeyFragments.contains { k.contains($0) }
    }

    static func looksLikeSecret(_ s: String) -> Bool {
        let u = Array(s.utf8)
        if u.count == 20, s.hasPrefix("AKIA") || s.hasPrefix("ASIA"),
           u.allSatisfy({ ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) }) { return true }
        if s.contains("-----BEGIN") && s.contains("PRIVATE KEY") { return true }
        for prefix in ["ghp_", "gho_", "github_pat_", "xoxb-", "xoxp-", "sk-", "glpat-"] where s.hasPrefix(prefix) && u.count >= 20 {
            return true
        }
        if s.hasPrefix("eyJ"), s.split(separator: ".").count == 3, u.count > 40 { return true }
        return false
    }

    /// The value at `path` of `root`, rendered as compact JSON with sensitive parts replaced by
    /// `"(sensitive)"` and secret-looking ones by `"(redacted)"`, at most 200 characters.
    static func render(_ root: JSONValue?, at path: [PathStep], sensitive: JSONValue?) -> String? {
        guard var v = root else { return nil }
        var keyName = ""
        for step in path {
            switch step {
            case .key(let k):
                guard let next = v[k] else { return nil }
                v = next; keyName = k
            case .index(let i):
                guard let next = v[i] else { return nil }
                v = next
            }
        }
        if ResourceChange.isMarked(sensitive, path) { return "\"(sensitive)\"" }
        let redacted = redact(v, keyName: keyName, sensitive: sensitive, path: path, budget: 2000)
        var text = redacted.compactText
        if text.count > 200 { text = String(text.prefix(197)) + "..." }
        return text
    }

    static func redact(_ v: JSONValue, keyName: String, sensitive: JSONValue?, path: [PathStep], budget: Int) -> JSONValue {
        if ResourceChange.isMarked(sensitive, path) { return .string("(sensitive)") }
        switch v {
        case .string(let s):
            if (isSecretKey(keyName) && !s.isEmpty) || looksLikeSecret(s) { return .string("(redacted)") }
            return v
        case .object(let o):
            var out: [String: JSONValue] = [:]
            for (k, child) in o.prefix(max(1, budget / 10)) {
                out[k] = redact(child, keyName: k, sensitive: sensitive, path: path + [.key(k)], budget: budget / 2)
            }
            return .object(out)
        case .array(let a):
            return .array(a.prefix(max(1, budget / 10)).enumerated().map {
                redact($0.element, keyName: keyName, sensitive: sensitive, path: path + [.index($0.offset)], budget: budget / 2)
            })
        default:
            return v
        }
    }

    /// The first clear-text secret in a change's after value: its path, or nil.
    static func firstSecret(in c: ResourceChange) -> [PathStep]? {
        guard let after = c.after else { return nil }
        var stack: [(JSONValue, [PathStep], String)] = [(after, [], "")]
        var visited = 0
        while let (v, path, key) = stack.popLast() {
            visited += 1
            if visited > 20_000 { return nil }
            switch v {
            case .string(let s):
                if s.isEmpty || c.isSensitive(path) { continue }
                if (isSecretKey(key) && !s.hasPrefix("arn:") && !s.hasPrefix("${")) || looksLikeSecret(s) { return path }
            case .object(let o):
                for k in o.keys.sorted().reversed() { stack.append((o[k]!, path + [.key(k)], k)) }
            case .array(let a):
                for (i, child) in a.enumerated().reversed() { stack.append((child, path + [.index(i)], key)) }
            default:
                continue
            }
        }
        return nil
    }
}
