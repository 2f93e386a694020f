/// Redaction of sensitive and secret-looking values before they appear in a finding or a log.
enum Redactor {
    static let secretKeyFragments = ["password", "passwd", "secret", "token", "private_key", "privatekey",
                                     "access_key", "accesskey", "api_key", "apikey", "credential", "passphrase",
                                     "auth_key", "client_key", "connection_string"]

    static let secretKeyFragmentBytes: [[UInt8]] = secretKeyFragments.map { Array($0.utf8) }

    /// True when `key` contains a secret-looking fragment (ASCII case-insensitive; no Foundation,
    /// this runs for every attribute of every resource).
    static func isSecretKey(_ key: String) -> Bool {
        var k = [UInt8]()
        k.reserveCapacity(key.utf8.count)
        for b in key.utf8 { k.append(b >= 0x41 && b <= 0x5A ? b + 0x20 : b) }
        return secretKeyFragmentBytes.contains { containsBytes(k, $0) }
    }

    static func containsBytes(_ hay: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= hay.count, let first = needle.first else { return needle.isEmpty }
        var i = 0
        let last = hay.count - needle.count
        while i <= last {
            if hay[i] == first {
                var j = 1
                while j < needle.count && hay[i + j] == needle[j] { j += 1 }
                if j == needle.count { return true }
            }
            i += 1
        }
        return false
    }

    static let pemBegin = Array("-----BEGIN".utf8)
    static let pemPrivate = Array("PRIVATE KEY".utf8)

    static func looksLikeSecret(_ s: String) -> Bool {
        let u = Array(s.utf8)
        if u.count == 20, s.hasPrefix("AKIA") || s.hasPrefix("ASIA"),
           u.allSatisfy({ ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) }) { return true }
        if u.count > 30, containsBytes(u, pemBegin), containsBytes(u, pemPrivate) { return true }
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
            var out = JSONObject()
            for (k, child) in o.prefix(max(1, budget / 10)) {
                out.appendDistinct(key: k, value: redact(child, keyName: k, sensitive: sensitive, path: path + [.key(k)], budget: budget / 2))
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

    /// The first (by rendered path) clear-text secret in a change's after value, or nil.
    /// `secretKeys` memoises ``isSecretKey(_:)`` across the changes of one evaluation.
    static func firstSecret(in c: ResourceChange, secretKeys: inout [String: Bool]) -> [PathStep]? {
        guard let after = c.after else { return nil }
        var path: [PathStep] = []
        var found: [[PathStep]] = []
        var visited = 0
        func walk(_ v: JSONValue, _ keyIsSecret: Bool) {
            visited += 1
            if visited > 20_000 || found.count > 50 { return }
            switch v {
            case .string(let s):
                if s.isEmpty { return }
                let candidate = (keyIsSecret && !s.hasPrefix("arn:") && !s.hasPrefix("${")) || looksLikeSecret(s)
                if candidate && !c.isSensitive(path) { found.append(path) }
            case .object(let o):
                for (k, child) in o {
                    let secret: Bool
                    if let known = secretKeys[k] { secret = known } else { secret = isSecretKey(k); secretKeys[k] = secret }
                    path.append(.key(k))
                    walk(child, secret)
                    path.removeLast()
                }
            case .array(let a):
                for (i, child) in a.enumerated() {
                    path.append(.index(i))
                    walk(child, keyIsSecret)
                    path.removeLast()
                }
            default:
                return
            }
        }
        walk(after, false)
        return found.min { renderPath($0) < renderPath($1) }
    }
}
