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
    case object(JSONObject)

    subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    subscript(index: Int) -> JSONValue? {
        if case .array(let a) = self, index >= 0, index < a.count { return a[index] }
        return nil
    }

    var object: JSONObject? { if case .object(let o) = self { return o }; return nil }
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
            for (i, member) in o.sortedByKey().enumerated() {
                if i > 0 { out += "," }
                JSONValue.writeString(member.key, to: &out)
                out += ":"
                member.value.write(to: &out)
            }
            out += "}"
        }
    }

    static func writeString(_ s: String, to out: inout String) {
        // Nothing to escape (no quote, backslash or control character): the string as it is.
        if s.utf8.withContiguousStorageIfAvailable({ u in
            !u.contains { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }
        }) == true {
            out += "\""
            out += s
            out += "\""
            return
        }
        writeStringReference(s, to: &out)
    }

    /// The definition of ``writeString(_:to:)``, scalar by scalar.
    static func writeStringReference(_ s: String, to out: inout String) {
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

/// JSON text written outside the policy core (command output, log lines): strings quoted and
/// escaped exactly as the policy core writes its own (``JSONValue/writeString(_:to:)``), so that
/// there is one JSON string writer in the product.
public enum JSONText {
    /// `s` as a JSON string: in quotes, with `"`, `\` and control characters escaped.
    public static func quoted(_ s: String) -> String {
        var out = ""
        JSONValue.writeString(s, to: &out)
        return out
    }
}

/// The members of a JSON object, in document order.
///
/// Keys are compared as `String`s, exactly as a `[String: JSONValue]` compares them (canonically
/// equivalent keys are the same key). Small objects, nearly all of a plan's, are searched
/// linearly: no hasher to seed and no hash table to allocate for every object of every resource.
/// An object with more than ``indexThreshold`` members also keeps a hash index, so that lookups
/// in it stay constant-time and a hostile object with many keys is still read in linear time.
/// Equality and hashing ignore the order of members, as a dictionary's do.
struct JSONObject: Sendable, Hashable, RandomAccessCollection, ExpressibleByDictionaryLiteral {
    typealias Element = (key: String, value: JSONValue)

    /// A member as stored (a nominal type: arrays of it need no tuple metadata at run time).
    struct Member: Sendable {
        var key: String
        var value: JSONValue
        /// The key is all ASCII: it can only equal an ASCII key of the same UTF-8 length.
        var keyIsASCII: Bool

        init(key: String, value: JSONValue, keyIsASCII: Bool) {
            self.key = key
            self.value = value
            self.keyIsASCII = keyIsASCII
        }

        init(key: String, value: JSONValue) {
            self.init(key: key, value: value, keyIsASCII: isASCII(key))
        }
    }

    /// Objects with more members than this keep a hash index.
    static let indexThreshold = 16

    private var members: ContiguousArray<Member>
    /// Key → position; present exactly when `members.count > indexThreshold`.
    private var keyIndex: [String: Int]?

    init() {
        members = []
        keyIndex = nil
    }

    /// Members whose keys are known to be distinct, with their index when there are more than
    /// ``indexThreshold`` (the reader builds both while it checks for duplicate keys).
    init(distinctMembers: ContiguousArray<Member>, index: [String: Int]?) {
        assert((index != nil) == (distinctMembers.count > JSONObject.indexThreshold))
        self.members = distinctMembers
        self.keyIndex = index
    }

    /// The members of a dictionary, in key order.
    init(_ dictionary: [String: JSONValue]) {
        self.init()
        for key in dictionary.keys.sorted() { appendDistinct(key: key, value: dictionary[key]!) }
    }

    /// - Important: Like a dictionary literal, a literal with a key twice is a programming error.
    init(dictionaryLiteral elements: (String, JSONValue)...) {
        self.init()
        for (key, value) in elements {
            precondition(position(of: key) == nil, "JSONObject literal with a duplicate key")
            appendDistinct(key: key, value: value)
        }
    }

    var startIndex: Int { 0 }
    var endIndex: Int { members.count }
    subscript(position: Int) -> Element {
        let member = members[position]
        return (key: member.key, value: member.value)
    }

    /// The position of the member whose key is `key` (`String` equality), if any.
    func position(of key: String) -> Int? {
        if let keyIndex { return keyIndex[key] }
        // An ASCII key equals only the ASCII key of the same length: most members are passed
        // over without a string comparison. (Non-ASCII keys can equal keys of other lengths.)
        let length = key.utf8.count
        var keyIsASCII: Bool?
        var i = 0
        while i < members.count {
            if members[i].keyIsASCII && members[i].key.utf8.count != length {
                if keyIsASCII == nil { keyIsASCII = isASCII(key) }
                if keyIsASCII! { i += 1; continue }
            }
            if members[i].key == key { return i }
            i += 1
        }
        return nil
    }

    /// The value of the member `key`. Setting a key that is present replaces its value (the
    /// stored key is kept); setting a new key appends it; setting nil removes it.
    subscript(key: String) -> JSONValue? {
        get {
            guard let i = position(of: key) else { return nil }
            return members[i].value
        }
        set {
            if let i = position(of: key) {
                if let newValue {
                    members[i].value = newValue
                } else {
                    members.remove(at: i)
                    rebuildIndex()
                }
            } else if let newValue {
                appendDistinct(key: key, value: newValue)
            }
        }
    }

    /// Appends a member whose key the caller knows is not present yet.
    mutating func appendDistinct(key: String, value: JSONValue) {
        members.append(Member(key: key, value: value))
        if keyIndex != nil {
            keyIndex![key] = members.count - 1
        } else if members.count > JSONObject.indexThreshold {
            rebuildIndex()
        }
    }

    private mutating func rebuildIndex() {
        guard members.count > JSONObject.indexThreshold else { keyIndex = nil; return }
        var built = [String: Int](minimumCapacity: members.count)
        for (i, member) in members.enumerated() { built[member.key] = i }
        keyIndex = built
    }

    var keys: LazyMapSequence<ContiguousArray<Member>, String> { members.lazy.map(\.key) }
    var values: LazyMapSequence<ContiguousArray<Member>, JSONValue> { members.lazy.map(\.value) }

    /// The members sorted by key (`String` order), for canonical output.
    func sortedByKey() -> [Member] { members.sorted { $0.key < $1.key } }

    static func == (a: JSONObject, b: JSONObject) -> Bool {
        guard a.count == b.count else { return false }
        for member in a.members {
            guard let other = b[member.key], other == member.value else { return false }
        }
        return true
    }

    /// Independent of member order (a commutative combination of the members' hashes).
    func hash(into hasher: inout Hasher) {
        var commutative = 0
        for member in members {
            var h = Hasher()
            h.combine(member.key)
            h.combine(member.value)
            commutative ^= h.finalize()
        }
        hasher.combine(members.count)
        hasher.combine(commutative)
    }
}

/// True when `s` is all ASCII (false when its bytes cannot be read in place).
func isASCII(_ s: String) -> Bool {
    s.utf8.withContiguousStorageIfAvailable { u in
        var high: UInt8 = 0
        for b in u { high |= b }
        return high < 0x80
    } ?? false
}

/// Parses strict JSON with the given depth limit.
struct JSONReader: ~Copyable {
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
    /// Whether the string parseString returned last is all ASCII.
    private var lastStringIsASCII = false
    /// Objects and arrays so far: bounds memory whatever the shape of the input.
    private var containers = 0
    static let maxContainers = 500_000
    private let maxDepth: Int
    private let what: String
    /// Members of the objects and items of the arrays being read, innermost last: a container's
    /// are moved into an array of exactly their number when it closes (one allocation each).
    private var members = ScratchStack<JSONObject.Member>()
    private var items = ScratchStack<JSONValue>()

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
        if pos < buf.count, buf[pos] == UInt8(ascii: "}") { pos += 1; return .object(JSONObject()) }
        let first = members.count
        // Duplicate keys: a linear search while the object is small, a hash index beyond that.
        var index: [String: Int]?
        // Bits of the (length, first byte, last byte) of the ASCII keys so far: an ASCII key whose
        // bit is not set has no equal among them, and none at all while every key is ASCII (an
        // ASCII key can equal a non-ASCII one, as "K" equals the Kelvin sign).
        var asciiKeyBits: UInt64 = 0
        var allKeysASCII = true
        while true {
            skipWhitespace()
            guard pos < buf.count else { throw fail("unexpected end of input in an object") }
            guard buf[pos] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let keyStart = pos
            let key = try parseString()
            let keyIsASCII = lastStringIsASCII
            var keyBit: UInt64 = 0
            if keyIsASCII {
                // The key's bytes end just before the closing quote (no escapes: an escaped key
                // is made by the slow path, which is not asked).
                let end = pos - 1
                let length = key.utf8.count
                if end - keyStart - 1 == length, length > 0 {
                    keyBit = 1 << ((UInt64(length) &* 31 &+ UInt64(buf[keyStart + 1]) &* 7 &+ UInt64(buf[end - 1])) & 63)
                }
            }
            skipWhitespace()
            guard pos < buf.count, buf[pos] == UInt8(ascii: ":") else { throw fail("expected ':' after a key") }
            pos += 1
            skipWhitespace()
            let value = try parseValue(depth: depth + 1)
            let n = members.count - first
            var duplicate: Bool
            if index != nil {
                duplicate = index!.updateValue(n, forKey: key) != nil
            } else if n < JSONObject.indexThreshold {
                if allKeysASCII && keyBit != 0 && asciiKeyBits & keyBit == 0 {
                    duplicate = false
                } else {
                    duplicate = members.containsKey(key, isASCII: keyIsASCII, from: first)
                }
            } else {
                var built = [String: Int](minimumCapacity: 2 * n)
                members.forEachKey(from: first) { i, k in built[k] = i }
                duplicate = built.updateValue(n, forKey: key) != nil
                index = built
            }
            if duplicate {
                pos = keyStart
                throw fail("duplicate key in an object")
            }
            if keyBit == 0 { allKeysASCII = false } else { asciiKeyBits |= keyBit }
            members.push(JSONObject.Member(key: key, value: value, keyIsASCII: keyIsASCII))
            skipWhitespace()
            guard pos < buf.count else { throw fail("unexpected end of input in an object") }
            if buf[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if buf[pos] == UInt8(ascii: "}") {
                pos += 1
                return .object(JSONObject(distinctMembers: members.popContiguous(from: first), index: index))
            }
            throw fail("expected ',' or '}' in an object")
        }
    }

    private mutating func parseArray(depth: Int) throws -> JSONValue {
        pos += 1
        skipWhitespace()
        if pos < buf.count, buf[pos] == UInt8(ascii: "]") { pos += 1; return .array([]) }
        let first = items.count
        while true {
            skipWhitespace()
            let item = try parseValue(depth: depth + 1)
            items.push(item)
            skipWhitespace()
            guard pos < buf.count else { throw fail("unexpected end of input in an array") }
            if buf[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if buf[pos] == UInt8(ascii: "]") { pos += 1; return .array(items.popArray(from: first)) }
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
                lastStringIsASCII = ascii
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
                lastStringIsASCII = bytes.allSatisfy { $0 < 0x80 }
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
        if isInteger {
            // The grammar above admits only `-?(0|[1-9][0-9]*)` here; accumulate towards the sign
            // so that Int64.min is reachable.
            let negative = buf[start] == UInt8(ascii: "-")
            var i: Int64 = 0
            for p in (negative ? start + 1 : start)..<pos {
                let digit = Int64(buf[p] &- UInt8(ascii: "0"))
                let (times10, o1) = i.multipliedReportingOverflow(by: 10)
                let (next, o2) = negative ? times10.subtractingReportingOverflow(digit) : times10.addingReportingOverflow(digit)
                if o1 || o2 { pos = start; throw fail("integer beyond the 64-bit range") }
                i = next
            }
            return .int(i)
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: buf[start..<pos]), as: UTF8.self)
        guard let d = Double(text), d.isFinite else { pos = start; throw fail("number beyond the range of a double") }
        return .double(d)
    }
}

/// A stack of elements that owns its storage, for the reader's containers in progress.
struct ScratchStack<Element>: ~Copyable {
    private var base: UnsafeMutablePointer<Element>
    private var capacity: Int
    private(set) var count = 0

    init() {
        capacity = 64
        base = .allocate(capacity: capacity)
    }

    deinit {
        base.deinitialize(count: count)
        base.deallocate()
    }

    mutating func push(_ element: consuming Element) {
        if count == capacity {
            let bigger = UnsafeMutablePointer<Element>.allocate(capacity: capacity * 2)
            bigger.moveInitialize(from: base, count: count)
            base.deallocate()
            base = bigger
            capacity *= 2
        }
        (base + count).initialize(to: element)
        count += 1
    }

    /// Moves the elements from `first` on into a new array and removes them.
    mutating func popArray(from first: Int) -> [Element] {
        var out: [Element] = []
        out.reserveCapacity(count - first)
        for i in first..<count { out.append((base + i).move()) }
        count = first
        return out
    }

    /// Moves the elements from `first` on into a new contiguous array and removes them.
    mutating func popContiguous(from first: Int) -> ContiguousArray<Element> {
        // Grown by reserveCapacity and append, which the compiler specialises, rather than made
        // by Array(unsafeUninitializedCapacity:), whose allocation is a generic call into the
        // standard library that looks the storage type up at run time on every call.
        var out: ContiguousArray<Element> = []
        out.reserveCapacity(count - first)
        for i in first..<count { out.append((base + i).move()) }
        count = first
        return out
    }
}

extension ScratchStack where Element == JSONObject.Member {
    /// True when a member from `first` on has the key `key` (`String` equality; ASCII keys of
    /// different lengths are not compared, as in JSONObject.position(of:)).
    func containsKey(_ key: String, isASCII keyIsASCII: Bool, from first: Int) -> Bool {
        let length = key.utf8.count
        var i = first
        while i < count {
            if !(keyIsASCII && base[i].keyIsASCII && base[i].key.utf8.count != length), base[i].key == key { return true }
            i += 1
        }
        return false
    }

    /// Calls `body` with the position (counted from `first`) and key of each member from `first` on.
    func forEachKey(from first: Int, _ body: (Int, String) -> Void) {
        for i in first..<count { body(i - first, base[i].key) }
    }
}
