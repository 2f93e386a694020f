/// The protobuf wire types (https://protobuf.dev/programming-guides/encoding/).
public enum WireType: UInt8, Sendable {
    case varint = 0
    case fixed64 = 1
    case lengthDelimited = 2
    case startGroup = 3
    case endGroup = 4
    case fixed32 = 5
}

/// Encodes fields in the protobuf wire format. Messages call the `write` functions in field-number
/// order, which makes the encoding deterministic; proto3 defaults (0, false, empty) are not written,
/// as protoc-generated code does.
public struct ProtoWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(reservingCapacity capacity: Int = 128) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    // MARK: primitives

    public mutating func writeVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    public mutating func writeTag(_ field: Int, _ wireType: WireType) {
        writeVarint(UInt64(field) << 3 | UInt64(wireType.rawValue))
    }

    public mutating func writeFixed32Raw(_ value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func writeFixed64Raw(_ value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func writeLengthDelimited(_ field: Int, _ payload: some Collection<UInt8>) {
        writeTag(field, .lengthDelimited)
        writeVarint(UInt64(payload.count))
        bytes.append(contentsOf: payload)
    }

    // MARK: singular fields (proto3: defaults are skipped)

    public mutating func write(_ field: Int, uint64 value: UInt64) {
        guard value != 0 else { return }
        writeTag(field, .varint); writeVarint(value)
    }
    public mutating func write(_ field: Int, uint32 value: UInt32) { write(field, uint64: UInt64(value)) }
    /// int64 and int32 are sign-extended to 64 bits: a negative value takes 10 bytes.
    public mutating func write(_ field: Int, int64 value: Int64) { write(field, uint64: UInt64(bitPattern: value)) }
    public mutating func write(_ field: Int, int32 value: Int32) { write(field, int64: Int64(value)) }
    public mutating func write(_ field: Int, sint64 value: Int64) { write(field, uint64: ZigZag.encode(value)) }
    public mutating func write(_ field: Int, sint32 value: Int32) { write(field, uint64: ZigZag.encode(Int64(value))) }
    public mutating func write(_ field: Int, bool value: Bool) { write(field, uint64: value ? 1 : 0) }
    public mutating func write(_ field: Int, enum value: Int32) { write(field, int64: Int64(value)) }

    public mutating func write(_ field: Int, fixed64 value: UInt64) {
        guard value != 0 else { return }
        writeTag(field, .fixed64); writeFixed64Raw(value)
    }
    public mutating func write(_ field: Int, fixed32 value: UInt32) {
        guard value != 0 else { return }
        writeTag(field, .fixed32); writeFixed32Raw(value)
    }
    public mutating func write(_ field: Int, sfixed64 value: Int64) { write(field, fixed64: UInt64(bitPattern: value)) }
    public mutating func write(_ field: Int, sfixed32 value: Int32) { write(field, fixed32: UInt32(bitPattern: value)) }
    /// Written unless it is +0.0 (so -0.0 is written, as protoc does).
    public mutating func write(_ field: Int, double value: Double) {
        guard value.bitPattern != 0 else { return }
        writeTag(field, .fixed64); writeFixed64Raw(value.bitPattern)
    }
    public mutating func write(_ field: Int, float value: Float) {
        guard value.bitPattern != 0 else { return }
        writeTag(field, .fixed32); writeFixed32Raw(value.bitPattern)
    }

    public mutating func write(_ field: Int, string value: String) {
        guard !value.isEmpty else { return }
        var value = value
        value.withUTF8 { writeLengthDelimited(field, $0) }
    }
    public mutating func write(_ field: Int, bytes value: [UInt8]) {
        guard !value.isEmpty else { return }
        writeLengthDelimited(field, value)
    }

    /// A nested message; `nil` is not written, an empty message is (as a zero length).
    public mutating func write<M: ProtoMessage>(_ field: Int, message value: M?) {
        guard let value else { return }
        writeNested(field, value)
    }

    // MARK: repeated fields

    public mutating func write(_ field: Int, strings values: [String]) {
        for var v in values { v.withUTF8 { writeLengthDelimited(field, $0) } }
    }
    public mutating func write(_ field: Int, bytesList values: [[UInt8]]) {
        for v in values { writeLengthDelimited(field, v) }
    }
    public mutating func write<M: ProtoMessage>(_ field: Int, messages values: [M]) {
        for v in values { writeNested(field, v) }
    }
    /// Unpacked (one tag per element), for fields declared `[packed = false]`.
    public mutating func write(_ field: Int, unpackedInt32 values: [Int32]) {
        for v in values { writeTag(field, .varint); writeVarint(UInt64(bitPattern: Int64(v))) }
    }
    public mutating func write(_ field: Int, unpackedUInt64 values: [UInt64]) {
        for v in values { writeTag(field, .varint); writeVarint(v) }
    }
    /// Packed, as proto3 does by default for repeated scalars.
    public mutating func write(_ field: Int, packedUInt64 values: [UInt64]) {
        writePacked(field, values) { w, v in w.writeVarint(v) }
    }
    public mutating func write(_ field: Int, packedInt64 values: [Int64]) {
        writePacked(field, values) { w, v in w.writeVarint(UInt64(bitPattern: v)) }
    }
    public mutating func write(_ field: Int, packedSInt64 values: [Int64]) {
        writePacked(field, values) { w, v in w.writeVarint(ZigZag.encode(v)) }
    }
    public mutating func write(_ field: Int, packedUInt32 values: [UInt32]) {
        writePacked(field, values) { w, v in w.writeVarint(UInt64(v)) }
    }
    public mutating func write(_ field: Int, packedInt32 values: [Int32]) {
        writePacked(field, values) { w, v in w.writeVarint(UInt64(bitPattern: Int64(v))) }
    }
    public mutating func write(_ field: Int, packedEnums values: [Int32]) {
        write(field, packedInt32: values)
    }
    public mutating func write(_ field: Int, packedBools values: [Bool]) {
        writePacked(field, values) { w, v in w.bytes.append(v ? 1 : 0) }
    }
    public mutating func write(_ field: Int, packedFixed64 values: [UInt64]) {
        writePacked(field, values) { w, v in w.writeFixed64Raw(v) }
    }
    public mutating func write(_ field: Int, packedFixed32 values: [UInt32]) {
        writePacked(field, values) { w, v in w.writeFixed32Raw(v) }
    }
    public mutating func write(_ field: Int, packedDoubles values: [Double]) {
        writePacked(field, values) { w, v in w.writeFixed64Raw(v.bitPattern) }
    }

    // MARK: helpers

    private mutating func writePacked<T>(_ field: Int, _ values: [T], _ element: (inout ProtoWriter, T) -> Void) {
        guard !values.isEmpty else { return }
        var inner = ProtoWriter(reservingCapacity: values.count * 2)
        for v in values { element(&inner, v) }
        writeLengthDelimited(field, inner.bytes)
    }

    private mutating func writeNested<M: ProtoMessage>(_ field: Int, _ value: M) {
        var inner = ProtoWriter()
        value.encode(to: &inner)
        writeLengthDelimited(field, inner.bytes)
    }
}

/// ZigZag encoding of signed integers (`sint32`, `sint64`).
public enum ZigZag {
    public static func encode(_ v: Int64) -> UInt64 { UInt64(bitPattern: (v << 1) ^ (v >> 63)) }
    public static func decode(_ v: UInt64) -> Int64 { Int64(bitPattern: v >> 1) ^ -Int64(bitPattern: v & 1) }
}
