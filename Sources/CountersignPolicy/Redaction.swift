/// Redaction of sensitive and secret-looking values before they appear in a finding or a log.
enum Redactor {
    static let secretKeyFragments = ["password", "passwd", "secret", "token", "private_key", "privatekey",
                                     "access_key", "accesskey", "api_key", "apikey", "credential", "passphrase",
                                     "auth_key", "client_key", "connection_string"]

    static let secretKeyFragmentBytes: [[UInt8]] = secretKeyFragments.map { Array($0.utf8) }

    /// Bit b of this 256-bit set (word b / 64) is set when a fragment starts with byte b.
    static let secretKeyFragmentStarts: [UInt64] = {
        var words = [UInt64](repeating: 0, count: 4)
        for f in secretKeyFragmentBytes { words[Int(f[0] >> 6)] |= 1 << UInt64(f[0] & 63) }
        return words
    }()

    /// The fragments by their first byte.
    static let secretKeyFragmentsByFirstByte: [[[UInt8]]] = {
        var table = [[[UInt8]]](repeating: [], count: 256)
        for f in secretKeyFragmentBytes { table[Int(f[0])].append(f) }
        return table
    }()

    /// True when `key` contains a secret-looking fragment (ASCII case-insensitive; no Foundation,
    /// this runs for every attribute of every resource).
    static func isSecretKey(_ key: String) -> Bool {
        key.utf8.withContiguousStorageIfAvailable(isSecretKey) ?? isSecretKeyReference(key)
    }

    /// The definition of ``isSecretKey(_:)``: the key lower-cased, then each fragment searched.
    static func isSecretKeyReference(_ key: String) -> Bool {
        var k = [UInt8]()
        k.reserveCapacity(key.utf8.count)
        for b in key.utf8 { k.append(b >= 0x41 && b <= 0x5A ? b + 0x20 : b) }
        return secretKeyFragmentBytes.contains { containsBytes(k, $0) }
    }

    /// ``isSecretKey(_:)`` of UTF-8 bytes: a fragment found at some position, read lower-cased.
    static func isSecretKey(_ key: UnsafeBufferPointer<UInt8>) -> Bool {
        @inline(__always) func lower(_ b: UInt8) -> UInt8 { b >= 0x41 && b <= 0x5A ? b + 0x20 : b }
        let n = key.count
        let starts = secretKeyFragmentStarts
        let table = secretKeyFragmentsByFirstByte
        for i in 0..<n {
            let b = lower(key[i])
            guard starts[Int(b >> 6)] & (1 << UInt64(b & 63)) != 0 else { continue }
            let candidates = table[Int(b)]
            for f in candidates where f.count <= n - i {
                var j = 1
                while j < f.count && lower(key[i + j]) == f[j] { j += 1 }
                if j == f.count { return true }
            }
        }
        return false
    }

    static func containsBytes(_ hay: [UInt8], _ needle: [UInt8]) -> Bool {
        hay.withUnsafeBufferPointer { containsBytes($0, needle) }
    }

    static func containsBytes(_ hay: UnsafeBufferPointer<UInt8>, _ needle: [UInt8]) -> Bool {
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

    static let secretPrefixes = ["ghp_", "gho_", "github_pat_", "xoxb-", "xoxp-", "sk-", "glpat-"]
    static let secretPrefixBytes: [[UInt8]] = secretPrefixes.map { Array($0.utf8) }

    static func looksLikeSecret(_ s: String) -> Bool {
        // Every pattern below is at least 20 UTF-8 bytes long (most values are shorter).
        if s.utf8.count < 20 { return false }
        if let ascii = s.utf8.withContiguousStorageIfAvailable(looksLikeSecretASCII), let result = ascii { return result }
        return looksLikeSecretReference(s)
    }

    /// The definition of ``looksLikeSecret(_:)``, on characters.
    static func looksLikeSecretReference(_ s: String) -> Bool {
        let u = Array(s.utf8)
        if u.count == 20, s.hasPrefix("AKIA") || s.hasPrefix("ASIA"),
           u.allSatisfy({ ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) }) { return true }
        if u.count > 30, containsBytes(u, pemBegin), containsBytes(u, pemPrivate) { return true }
        for prefix in secretPrefixes where s.hasPrefix(prefix) && u.count >= 20 {
            return true
        }
        if s.hasPrefix("eyJ"), s.split(separator: ".").count == 3, u.count > 40 { return true }
        return false
    }

    /// ``looksLikeSecret(_:)`` of an ASCII string's bytes (for ASCII, `hasPrefix` and `split` on
    /// characters are the same as on bytes); nil when the string is not ASCII.
    static func looksLikeSecretASCII(_ u: UnsafeBufferPointer<UInt8>) -> Bool? {
        var high: UInt8 = 0
        for b in u { high |= b }
        guard high < 0x80 else { return nil }
        func hasPrefix(_ p: [UInt8]) -> Bool {
            guard p.count <= u.count else { return false }
            for i in 0..<p.count where u[i] != p[i] { return false }
            return true
        }
        if u.count == 20, hasPrefix(akia) || hasPrefix(asia),
           u.allSatisfy({ ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) }) { return true }
        if u.count > 30, containsBytes(u, pemBegin), containsBytes(u, pemPrivate) { return true }
        if u.count >= 20, secretPrefixBytes.contains(where: hasPrefix) { return true }
        if u.count > 40, hasPrefix(eyJ) {
            // s.split(separator: ".").count == 3: three non-empty runs between dots.
            var runs = 0
            var inRun = false
            for b in u {
                if b == UInt8(ascii: ".") { inRun = false } else if !inRun { inRun = true; runs += 1 }
            }
            if runs == 3 { return true }
        }
        return false
    }

    static let akia = Array("AKIA".utf8)
    static let asia = Array("ASIA".utf8)
    static let eyJ = Array("eyJ".utf8)

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
        var redactPath = path
        let redacted = redact(v, keyName: keyName, sensitive: sensitive, path: &redactPath, budget: 2000)
        var text = redacted.compactText
        // A character is at least one byte: only text of more than 200 bytes needs counting.
        if text.utf8.count > 200, text.count > 200 { text = String(text.prefix(197)) + "..." }
        return text
    }

    /// `v` with sensitive parts (by `path` in `sensitive`) and secret-looking strings replaced;
    /// `path` is where `v` is, and is as it was on return.
    static func redact(_ v: JSONValue, keyName: String, sensitive: JSONValue?, path: inout [PathStep], budget: Int) -> JSONValue {
        if ResourceChange.isMarked(sensitive, path) { return .string("(sensitive)") }
        switch v {
        case .string(let s):
            if (isSecretKey(keyName) && !s.isEmpty) || looksLikeSecret(s) { return .string("(redacted)") }
            return v
        case .object(let o):
            var out = JSONObject()
            for (k, child) in o.prefix(max(1, budget / 10)) {
                path.append(.key(k))
                out.appendDistinct(key: k, value: redact(child, keyName: k, sensitive: sensitive, path: &path, budget: budget / 2))
                path.removeLast()
            }
            return .object(out)
        case .array(let a):
            var out: [JSONValue] = []
            out.reserveCapacity(min(a.count, max(1, budget / 10)))
            for (i, child) in a.prefix(max(1, budget / 10)).enumerated() {
                path.append(.index(i))
                out.append(redact(child, keyName: keyName, sensitive: sensitive, path: &path, budget: budget / 2))
                path.removeLast()
            }
            return .array(out)
        default:
            return v
        }
    }

    static let arnPrefix = Array("arn:".utf8)
    static let interpolationPrefix = Array("${".utf8)

    /// True when `s` starts with `arn:` or `${` (references, not secrets).
    static func isReference(_ s: String) -> Bool {
        if let fast = s.utf8.withContiguousStorageIfAvailable({ u -> Bool? in
            guard let arn = asciiHasPrefix(u, arnPrefix), let interpolation = asciiHasPrefix(u, interpolationPrefix) else { return nil }
            return arn || interpolation
        }), let result = fast {
            return result
        }
        return s.hasPrefix("arn:") || s.hasPrefix("${")
    }

    /// `String.hasPrefix` of an ASCII prefix, from the bytes: nil when the string has a non-ASCII
    /// byte among its first `prefix.count + 1` (a combining mark there would change the answer).
    static func asciiHasPrefix(_ u: UnsafeBufferPointer<UInt8>, _ prefix: [UInt8]) -> Bool? {
        for i in 0..<min(u.count, prefix.count + 1) where u[i] >= 0x80 { return nil }
        guard u.count >= prefix.count else { return false }
        for i in 0..<prefix.count where u[i] != prefix[i] { return false }
        return true
    }

    /// The first (by rendered path) clear-text secret in a change's after value, or nil.
    static func firstSecret(in c: ResourceChange) -> [PathStep]? {
        guard let after = c.after else { return nil }
        var scan = SecretScan(change: c)
        scan.walk(after, false)
        return scan.found.min { renderPath($0) < renderPath($1) }
    }

    /// The walk of ``firstSecret(in:)``: every node counts towards the 20,000 visited; it stops
    /// after 51 finds.
    private struct SecretScan {
        let change: ResourceChange
        var path: [PathStep] = []
        var found: [[PathStep]] = []
        var visited = 0

        mutating func walk(_ v: JSONValue, _ keyIsSecret: Bool) {
            if case .string(let s) = v {
                visit(s, keyIsSecret)
                return
            }
            visited += 1
            if visited > 20_000 || found.count > 50 { return }
            switch v {
            case .object(let o):
                for (k, child) in o {
                    if case .string(let s) = child {
                        visit(s, isSecretKey(k), under: .key(k))
                        continue
                    }
                    // The key matters only to a string under it (here, or in arrays).
                    let secret = if case .array = child { isSecretKey(k) } else { false }
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

        /// A string node: counted, and recorded when it is a find. `step`, the member's key, is
        /// added to the path only then (most strings are not finds).
        mutating func visit(_ s: String, _ keyIsSecret: @autoclosure () -> Bool, under step: PathStep? = nil) {
            visited += 1
            if visited > 20_000 || found.count > 50 || s.isEmpty { return }
            guard (keyIsSecret() && !isReference(s)) || looksLikeSecret(s) else { return }
            if let step { path.append(step) }
            if !change.isSensitive(path) { found.append(path) }
            if step != nil { path.removeLast() }
        }
    }
}
