// A small strict JSON reader (RFC 8259) for untrusted plans.
//
// Why not Foundation's JSONSerialization: it accepts duplicate keys silently (the last one wins, so
// two readers of the same plan can disagree about what it says), it turns integers beyond Int64
// into lossy doubles, it recurses without a limit we control, and it hands back `Any`. This reader
// is depth-limited (recursion stops at `PlanLimits.maxDepth`, long before the stack is at risk),
// refuses duplicate keys, invalid UTF-8, control characters in strings, lone surrogates, integers
// outside Int64 and numbers that overflow a Double, and reports the byte offset of the problem
// without quoting the input.

/// A parsed JSON value.
enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    subscript(index: Int) -> JSONValue? {
        if case .array(let a) = self, index >= 0, index < a.count { return a[index] }
        return nil
    }

    var object: [String: JSONValue]? { if case .object(let o) = self { return o }; return nil }
    var array: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    var string: String? { if case .string(let s) = self { return s }; return nil }
    var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    var isNull: Bool { if case .null = self { return true }; return false }
    var double: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    /// A short type name for error messages.
    var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int, .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    /// Compact JSON text, keys sorted (deterministic).
    var compactText: String {
        var out = ""
        write(to: &out)
        return out
    }

    func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d): out += d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(d)
        case .string(let s): JSONValue.writeString(s, to: &out)
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                v.write(to: &out)
            }
            out += "]"
        case .object(let o):
            out += "{"
            for (i, k) in o.keys.sorted().enumerated() {
                if i > 0 { out += "," }
                JSONValue.writeString(k, to: &out)
                out += ":"
                o[k]!.write(to: &out)
            }
            out += "}"
        }
    }

    static func writeString(_ s: String, to out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}

/// Parses strict JSON with the given depth limit.
struct JSONReader {
    static func parse(_ bytes: [UInt8], maxDepth: Int, what: String = "plan") throws -> JSONValue {
        try bytes.withUnsafeBufferPointer { buf in
            var reader = JSONReader(buf: buf, maxDepth: maxDepth, what: what)
            reader.skipWhitespace()
            let value = try reader.parseValue(depth: 1)
            reader.skipWhitespace()
            if reader.pos != buf.count {
                throw reader.fail("unexpected data after the end of the JSON value")
            }
            return value
        }
    }

    private let buf: UnsafeBufferPointer<UInt8>
    private var pos = 0
    /// Objects and arrays so far: bounds memory whatever the shape of the input.
    private var containers = 0
    static let maxContainers = 500_000
    private let maxDepth: Int
    private let what: String

    private init(buf: UnsafeBufferPointer<UInt8>, maxDepth: Int, what: String) {
        self.buf = buf
        self.maxDepth = maxDepth
        self.what = what
    }

    private func fail(_ message: String) -> PolicyError {
        .invalidJSON("the \(what) is not valid JSON: \(message) at byte \(pos)")
    }

    private mutating func skipWhitespace() {
        while pos < buf.count {
            switch buf[pos] {
            case 0x20, 0x09, 0x0A, 0x0D: pos += 1
            default: return
            }
        }
    }

    private mutating func parseValue(depth: Int) throws -> JSONValue {
        guard pos < buf.count else { throw fail("unexpected end of input") }
        switch buf[pos] {
        case UInt8(ascii: "{"):
            guard depth <= maxDepth else { throw fail("nesting deeper than \(maxDepth) levels") }
            containers += 1
            guard containers <= JSONReader.maxContainers else { throw fail("more than \(JSONReader.maxContainers) objects and arrays") }
            return try parseObject(depth: depth)
        case UInt8(ascii: "["):
            guard depth <= maxDepth else { throw fail("nesting deeper than \(maxDepth) levels") }
            containers += 1
            guard containers <= JSONReader.maxContainers else { throw fail("more than \(JSONReader.maxContainers) objects and arrays") }
            return try parseArray(depth: depth)
        case UInt8(ascii: "\""):
            return .string(try parseString())
        case UInt8(ascii: "t"):
            try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"):
            try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"):
            try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return try parseNumber()
        default:
            throw fail("unexpected character")
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws {
        let n = literal.utf8CodeUnitCount
        guard pos + n <= buf.count else { throw fail("unexpected end of input") }
        let p = literal.utf8Start
        for i in 0..<n where buf[pos + i] != p[i] {
            throw fail("unexpected character")
        }
        pos += n
    }

    private mutating func parseObject(depth: Int) throws -> JSONValue {
        pos += 1
        skipWhitespace()
        if pos < buf.count, buf[pos] == UInt8(ascii: "}") { pos += 1; return .object([:]) }
        var dict = [String: JSONValue](minimumCapacity: 8)
        while true {
            skipWhitespace()
            guard pos < buf.count else { throw fail("unexpected end of input in an object") }
            guard buf[pos] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let keyStart = pos
            let key = try parseString()
            skipWhitespace()
            guard pos < buf.count, buf[pos] == UInt8(ascii: ":") else { throw fail("expected ':' after a key") }
            pos += 1
            skipWhitespace()
            let value = try parseValue(depth: depth + 1)
            if dict.updateValue(value, forKey: key) != nil {
                pos = keyStart
                throw fail("duplicate key in an object")
            }
            skipWhitespace()
            guard pos < buf.count else { throw fail("unexpected end of input in an object") }
            if buf[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if buf[pos] == UInt8(ascii: "}") { pos += 1; return .object(dict) }
            throw fail("expected ',' or '}' in an object")
        }
    }

    private mutating func parseArray(depth: Int) throws -> JSONValue {
        pos += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if pos < buf.count, buf[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
        while true {
            skipWhitespace()
            items.append(try parseValue(depth: depth + 1))
            skipWhitespace()
            guard pos < buf.count else { throw fail("unexpected end of input in an array") }
            if buf[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if buf[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
            throw fail("expected ',' or ']' in an array")
        }
    }

    private mutating func parseString() throws -> String {
        pos += 1
        let start = pos
        // Fast path: no escapes.
        var ascii = true
        while pos < buf.count {
            let c = buf[pos]
            if c == UInt8(ascii: "\"") {
                let slice = UnsafeBufferPointer(rebasing: buf[start..<pos])
                if ascii {
                    pos += 1
                    return String(decoding: slice, as: UTF8.self)
                }
                guard let s = String(validating: slice, as: UTF8.self) else {
                    throw fail("invalid UTF-8 in a string")
                }
                pos += 1
                return s
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw fail("control character in a string") }
            if c >= 0x80 { ascii = false }
            pos += 1
        }
        guard pos < buf.count else { throw fail("unterminated string") }
        // Slow path: escapes.
        var bytes = Array(buf[start..<pos])
        while pos < buf.count {
            let c = buf[pos]
            if c == UInt8(ascii: "\"") {
                pos += 1
                guard let s = String(validating: bytes, as: UTF8.self) else {
                    throw fail("invalid UTF-8 in a string")
                }
                return s
            }
            if c < 0x20 { throw fail("control character in a string") }
            if c != UInt8(ascii: "\\") { bytes.append(c); pos += 1; continue }
            pos += 1
            guard pos < buf.count else { throw fail("unterminated string") }
            let e = buf[pos]
            pos += 1
            switch e {
            case UInt8(ascii: "\""): bytes.append(0x22)
            case UInt8(ascii: "\\"): bytes.append(0x5C)
            case UInt8(ascii: "/"): bytes.append(0x2F)
            case UInt8(ascii: "b"): bytes.append(0x08)
            case UInt8(ascii: "f"): bytes.append(0x0C)
            case UInt8(ascii: "n"): bytes.append(0x0A)
            case UInt8(ascii: "r"): bytes.append(0x0D)
            case UInt8(ascii: "t"): bytes.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try readHex4()
                if (0xD800...0xDBFF).contains(scalar) {
                    guard pos + 1 < buf.count, buf[pos] == UInt8(ascii: "\\"), buf[pos + 1] == UInt8(ascii: "u") else {
                        throw fail("lone surrogate in a string")
                    }
                    pos += 2
                    let low = try readHex4()
                    guard (0xDC00...0xDFFF).contains(low) else { throw fail("lone surrogate in a string") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(scalar) {
                    throw fail("lone surrogate in a string")
                }
                guard let u = Unicode.Scalar(scalar) else { throw fail("invalid escape") }
                bytes.append(contentsOf: String(Character(u)).utf8)
            default:
                throw fail("invalid escape in a string")
            }
        }
        throw fail("unterminated string")
    }

    private mutating func readHex4() throws -> UInt32 {
        guard pos + 4 <= buf.count else { throw fail("unterminated escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = buf[pos]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("invalid \\u escape")
            }
            v = v << 4 | d
            pos += 1
        }
        return v
    }

    private mutating func parseNumber() throws -> JSONValue {
        let start = pos
        if buf[pos] == UInt8(ascii: "-") { pos += 1 }
        guard pos < buf.count else { throw fail("truncated number") }
        if buf[pos] == UInt8(ascii: "0") {
            pos += 1
        } else if buf[pos] >= UInt8(ascii: "1") && buf[pos] <= UInt8(ascii: "9") {
            while pos < buf.count, buf[pos] >= UInt8(ascii: "0"), buf[pos] <= UInt8(ascii: "9") { pos += 1 }
        } else {
            throw fail("invalid number")
        }
        var isInteger = true
        if pos < buf.count, buf[pos] == UInt8(ascii: ".") {
            isInteger = false
            pos += 1
            let digits = pos
            while pos < buf.count, buf[pos] >= UInt8(ascii: "0"), buf[pos] <= UInt8(ascii: "9") { pos += 1 }
            guard pos > digits else { throw fail("invalid number") }
        }
        if pos < buf.count, buf[pos] == UInt8(ascii: "e") || buf[pos] == UInt8(ascii: "E") {
            isInteger = false
            pos += 1
            if pos < buf.count, buf[pos] == UInt8(ascii: "+") || buf[pos] == UInt8(ascii: "-") { pos += 1 }
            let digits = pos
            while pos < buf.count, buf[pos] >= UInt8(ascii: "0"), buf[pos] <= UInt8(ascii: "9") { pos += 1 }
            guard pos > digits else { throw fail("invalid number") }
        }
        guard pos - start <= 400 else { pos = start; throw fail("number literal too long") }
        let text = String(decoding: UnsafeBufferPointer(rebasing: buf[start..<pos]), as: UTF8.self)
        if isInteger {
            guard let i = Int64(text) else { pos = start; throw fail("integer beyond the 64-bit range") }
            return .int(i)
        }
        guard let d = Double(text), d.isFinite else { pos = start; throw fail("number beyond the range of a double") }
        return .double(d)
    }
}
