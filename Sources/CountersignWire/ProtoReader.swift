/// Decodes the protobuf wire format from a byte array, field by field, within ``ProtoLimits``.
///
/// Every read checks the bytes that remain before it looks at them: a declared length beyond the
/// end, a varint that runs off the end or past ten bytes, a wire type the field cannot have, and
/// invalid UTF-8 in a `string` all throw a ``ProtoError``; nothing traps.
public struct ProtoReader: Sendable {
    @usableFromInline let bytes: [UInt8]
    @usableFromInline var index: Int
    @usableFromInline let end: Int
    public let depth: Int
    public let limits: ProtoLimits

    /// A reader over all of `bytes`.
    /// - Throws: ``ProtoError/Code/tooLarge`` when `bytes` exceeds `limits.maxMessageBytes`.
    public init(_ bytes: [UInt8], limits: ProtoLimits = .defaults) throws {
        guard bytes.count <= limits.maxMessageBytes else { throw ProtoError(.tooLarge, offset: 0) }
        self.bytes = bytes
        self.index = 0
        self.end = bytes.count
        self.depth = 0
        self.limits = limits
    }

    private init(parent: ProtoReader, start: Int, end: Int) throws {
        guard parent.depth + 1 <= parent.limits.maxDepth else { throw ProtoError(.tooDeep, offset: start) }
        self.bytes = parent.bytes
        self.index = start
        self.end = end
        self.depth = parent.depth + 1
        self.limits = parent.limits
    }

    public var isAtEnd: Bool { index >= end }
    /// Offset of the next byte to read, for error messages.
    public var offset: Int { index }

    // MARK: tags and primitives

    /// The next field's number and wire type, or `nil` at the end of the message.
    public mutating func nextField() throws -> (number: Int, wireType: WireType)? {
        guard index < end else { return nil }
        let start = index
        let key = try readVarint()
        guard let wireType = WireType(rawValue: UInt8(key & 7)), wireType != .startGroup, wireType != .endGroup else {
            throw ProtoError(.invalidWireType, offset: start)
        }
        let number = key >> 3
        guard number >= 1, number <= 0x1FFF_FFFF else { throw ProtoError(.invalidFieldNumber, offset: start) }
        return (Int(number), wireType)
    }

    @inlinable
    public mutating func readVarint() throws -> UInt64 {
        try bytes.withUnsafeBufferPointer { buffer in
            var result: UInt64 = 0
            var shift: UInt64 = 0
            var i = index
            while true {
                guard i < end else { throw ProtoError(.truncated, offset: i) }
                let byte = buffer[i]
                i += 1
                if shift == 63 && byte > 1 { throw ProtoError(.overlongVarint, offset: i - 1) }
                result |= UInt64(byte & 0x7F) << shift
                if byte < 0x80 { break }
                shift += 7
                if shift > 63 { throw ProtoError(.overlongVarint, offset: i) }
            }
            index = i
            return result
        }
    }

    @inlinable
    mutating func readFixed64Raw() throws -> UInt64 {
        guard end - index >= 8 else { throw ProtoError(.truncated, offset: index) }
        var v: UInt64 = 0
        bytes.withUnsafeBytes { raw in
            v = raw.loadUnaligned(fromByteOffset: index, as: UInt64.self)
        }
        index += 8
        return UInt64(littleEndian: v)
    }

    @inlinable
    mutating func readFixed32Raw() throws -> UInt32 {
        guard end - index >= 4 else { throw ProtoError(.truncated, offset: index) }
        var v: UInt32 = 0
        bytes.withUnsafeBytes { raw in
            v = raw.loadUnaligned(fromByteOffset: index, as: UInt32.self)
        }
        index += 4
        return UInt32(littleEndian: v)
    }

    /// Reads a length prefix and returns the range of the payload, checked against the end.
    @inlinable
    mutating func readLengthDelimitedRange() throws -> Range<Int> {
        let start = index
        let length = try readVarint()
        guard length <= UInt64(end - index) else { throw ProtoError(.truncated, offset: start) }
        let range = index..<(index + Int(length))
        index = range.upperBound
        return range
    }

    /// Skips a value of an unknown field.
    public mutating func skip(_ wireType: WireType) throws {
        switch wireType {
        case .varint: _ = try readVarint()
        case .fixed64: _ = try readFixed64Raw()
        case .fixed32: _ = try readFixed32Raw()
        case .lengthDelimited: _ = try readLengthDelimitedRange()
        case .startGroup, .endGroup: throw ProtoError(.invalidWireType, offset: index)
        }
    }

    @inlinable
    func expect(_ actual: WireType, _ expected: WireType) throws {
        guard actual == expected else { throw ProtoError(.wrongWireType, offset: index) }
    }

    // MARK: singular fields

    public mutating func readUInt64(_ wt: WireType) throws -> UInt64 { try expect(wt, .varint); return try readVarint() }
    public mutating func readInt64(_ wt: WireType) throws -> Int64 { Int64(bitPattern: try readUInt64(wt)) }
    /// uint32 and int32 keep the low 32 bits of the varint, as protoc-generated parsers do.
    public mutating func readUInt32(_ wt: WireType) throws -> UInt32 { UInt32(truncatingIfNeeded: try readUInt64(wt)) }
    public mutating func readInt32(_ wt: WireType) throws -> Int32 { Int32(truncatingIfNeeded: try readUInt64(wt)) }
    public mutating func readSInt64(_ wt: WireType) throws -> Int64 { ZigZag.decode(try readUInt64(wt)) }
    public mutating func readSInt32(_ wt: WireType) throws -> Int32 { Int32(truncatingIfNeeded: ZigZag.decode(try readUInt64(wt))) }
    public mutating func readBool(_ wt: WireType) throws -> Bool { try readUInt64(wt) != 0 }
    public mutating func readEnum(_ wt: WireType) throws -> Int32 { try readInt32(wt) }
    public mutating func readFixed64(_ wt: WireType) throws -> UInt64 { try expect(wt, .fixed64); return try readFixed64Raw() }
    public mutating func readFixed32(_ wt: WireType) throws -> UInt32 { try expect(wt, .fixed32); return try readFixed32Raw() }
    public mutating func readSFixed64(_ wt: WireType) throws -> Int64 { Int64(bitPattern: try readFixed64(wt)) }
    public mutating func readSFixed32(_ wt: WireType) throws -> Int32 { Int32(bitPattern: try readFixed32(wt)) }
    public mutating func readDouble(_ wt: WireType) throws -> Double { Double(bitPattern: try readFixed64(wt)) }
    public mutating func readFloat(_ wt: WireType) throws -> Float { Float(bitPattern: try readFixed32(wt)) }

    public mutating func readBytes(_ wt: WireType) throws -> [UInt8] {
        try expect(wt, .lengthDelimited)
        let range = try readLengthDelimitedRange()
        return Array(bytes[range])
    }

    public mutating func readString(_ wt: WireType) throws -> String {
        try expect(wt, .lengthDelimited)
        let start = index
        let range = try readLengthDelimitedRange()
        let string: String? = bytes.withUnsafeBufferPointer { buffer in
            String(validating: UnsafeBufferPointer(rebasing: buffer[range]), as: UTF8.self)
        }
        guard let string else { throw ProtoError(.invalidUTF8, offset: start) }
        return string
    }

    public mutating func readMessage<M: ProtoMessage>(_ wt: WireType, as type: M.Type = M.self) throws -> M {
        try expect(wt, .lengthDelimited)
        let range = try readLengthDelimitedRange()
        var nested = try ProtoReader(parent: self, start: range.lowerBound, end: range.upperBound)
        return try M(from: &nested)
    }

    /// Merges another occurrence of a singular message field into `value`, as protobuf parsers do
    /// when a message field appears more than once.
    public mutating func mergeMessage<M: ProtoMessage>(_ wt: WireType, into value: inout M?) throws {
        try expect(wt, .lengthDelimited)
        let range = try readLengthDelimitedRange()
        var nested = try ProtoReader(parent: self, start: range.lowerBound, end: range.upperBound)
        var message = value ?? M()
        try message.merge(from: &nested)
        value = message
    }

    // MARK: repeated scalars: packed or not, both are accepted (proto3 parsers must)

    private mutating func readRepeated<T>(_ wt: WireType, _ scalar: WireType, into values: inout [T],
                                          _ element: (inout ProtoReader) throws -> T) throws {
        if wt == .lengthDelimited {
            let range = try readLengthDelimitedRange()
            var packed = try ProtoReader(parent: self, start: range.lowerBound, end: range.upperBound)
            while !packed.isAtEnd { values.append(try element(&packed)) }
        } else {
            try expect(wt, scalar)
            values.append(try element(&self))
        }
    }

    public mutating func readRepeatedUInt64(_ wt: WireType, into values: inout [UInt64]) throws {
        try readRepeated(wt, .varint, into: &values) { try $0.readVarint() }
    }
    public mutating func readRepeatedInt64(_ wt: WireType, into values: inout [Int64]) throws {
        try readRepeated(wt, .varint, into: &values) { Int64(bitPattern: try $0.readVarint()) }
    }
    public mutating func readRepeatedSInt64(_ wt: WireType, into values: inout [Int64]) throws {
        try readRepeated(wt, .varint, into: &values) { ZigZag.decode(try $0.readVarint()) }
    }
    public mutating func readRepeatedUInt32(_ wt: WireType, into values: inout [UInt32]) throws {
        try readRepeated(wt, .varint, into: &values) { UInt32(truncatingIfNeeded: try $0.readVarint()) }
    }
    public mutating func readRepeatedInt32(_ wt: WireType, into values: inout [Int32]) throws {
        try readRepeated(wt, .varint, into: &values) { Int32(truncatingIfNeeded: try $0.readVarint()) }
    }
    public mutating func readRepeatedEnum(_ wt: WireType, into values: inout [Int32]) throws {
        try readRepeatedInt32(wt, into: &values)
    }
    public mutating func readRepeatedBool(_ wt: WireType, into values: inout [Bool]) throws {
        try readRepeated(wt, .varint, into: &values) { try $0.readVarint() != 0 }
    }
    public mutating func readRepeatedFixed64(_ wt: WireType, into values: inout [UInt64]) throws {
        try readRepeated(wt, .fixed64, into: &values) { try $0.readFixed64Raw() }
    }
    public mutating func readRepeatedFixed32(_ wt: WireType, into values: inout [UInt32]) throws {
        try readRepeated(wt, .fixed32, into: &values) { try $0.readFixed32Raw() }
    }
    public mutating func readRepeatedDouble(_ wt: WireType, into values: inout [Double]) throws {
        try readRepeated(wt, .fixed64, into: &values) { Double(bitPattern: try $0.readFixed64Raw()) }
    }
}

/// A protobuf message with a hand-written codec. Conforming types decode their known fields in
/// ``decodeField(_:_:from:)`` (returning `false` for unknown ones, which are skipped) and encode
/// their fields in field-number order in ``encode(to:)``.
public protocol ProtoMessage: Sendable, Hashable {
    /// The fully qualified protobuf name, such as `countersign.v1.Envelope`.
    static var protoName: String { get }
    init()
    /// Decodes one field; returns `false` when `number` is not a field of this message.
    mutating func decodeField(_ number: Int, _ wireType: WireType, from reader: inout ProtoReader) throws -> Bool
    /// Appends the message's fields, in field-number order, skipping proto3 defaults.
    func encode(to writer: inout ProtoWriter)
}

extension ProtoMessage {
    /// Decodes a message from its protobuf bytes.
    /// - Throws: ``ProtoError`` naming the message and field where decoding failed.
    public init(protobuf bytes: [UInt8], limits: ProtoLimits = .defaults) throws {
        var reader = try ProtoReader(bytes, limits: limits)
        try self.init(from: &reader)
    }

    /// Decodes the rest of `reader` as this message.
    public init(from reader: inout ProtoReader) throws {
        self.init()
        try merge(from: &reader)
    }

    /// Decodes the rest of `reader` into this message: fields present overwrite, repeated ones append.
    public mutating func merge(from reader: inout ProtoReader) throws {
        while let (number, wireType) = try reader.nextField() {
            do {
                if try !decodeField(number, wireType, from: &reader) {
                    try reader.skip(wireType)
                }
            } catch var error as ProtoError {
                if error.field.isEmpty { error.field = "\(Self.protoName) field \(number)" }
                throw error
            }
        }
    }

    /// The deterministic encoding: known fields only, in field-number order.
    public func protobufBytes() -> [UInt8] {
        var writer = ProtoWriter()
        encode(to: &writer)
        return writer.bytes
    }
}
