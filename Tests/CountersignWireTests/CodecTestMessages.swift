import CountersignWire

// Hand-written counterparts of proto/testing/codec_test.proto, used by the golden vectors.

struct Color: ProtoEnum {
    var rawValue: Int32
    init(rawValue: Int32) { self.rawValue = rawValue }
    static let names = ["UNSPECIFIED", "RED", "GREEN"]
}

struct Inner: ProtoMessage {
    static let protoName = "countersign.testing.Inner"
    var name = ""
    var value: Int64 = 0
    var child: Box<Inner>?
    init() {}

    mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: name = try r.readString(wt)
        case 2: value = try r.readInt64(wt)
        case 3:
            var c = child?.value
            try r.mergeMessage(wt, into: &c)
            child = c.map(Box.init)
        default: return false
        }
        return true
    }

    func encode(to w: inout ProtoWriter) {
        w.write(1, string: name)
        w.write(2, int64: value)
        w.write(3, message: child?.value)
    }
}

/// Indirection for a recursive message field.
final class Box<T: Hashable & Sendable>: Hashable, Sendable {
    let value: T
    init(_ value: T) { self.value = value }
    static func == (a: Box, b: Box) -> Bool { a.value == b.value }
    func hash(into h: inout Hasher) { h.combine(value) }
}

struct CodecTest: ProtoMessage {
    static let protoName = "countersign.testing.CodecTest"
    var fInt32: Int32 = 0
    var fInt64: Int64 = 0
    var fUInt32: UInt32 = 0
    var fUInt64: UInt64 = 0
    var fSInt32: Int32 = 0
    var fSInt64: Int64 = 0
    var fFixed32: UInt32 = 0
    var fFixed64: UInt64 = 0
    var fSFixed32: Int32 = 0
    var fSFixed64: Int64 = 0
    var fDouble: Double = 0
    var fFloat: Float = 0
    var fBool = false
    var fString = ""
    var fBytes: [UInt8] = []
    var fEnum = Color(rawValue: 0)
    var fInner: Inner?
    var rInt32: [Int32] = []
    var rInt32Unpacked: [Int32] = []
    var rSInt64: [Int64] = []
    var rDouble: [Double] = []
    var rString: [String] = []
    var rBytes: [[UInt8]] = []
    var rInner: [Inner] = []
    var rUInt64Unpacked: [UInt64] = []
    var rBool: [Bool] = []
    var rFixed32: [UInt32] = []
    init() {}

    mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: fInt32 = try r.readInt32(wt)
        case 2: fInt64 = try r.readInt64(wt)
        case 3: fUInt32 = try r.readUInt32(wt)
        case 4: fUInt64 = try r.readUInt64(wt)
        case 5: fSInt32 = try r.readSInt32(wt)
        case 6: fSInt64 = try r.readSInt64(wt)
        case 7: fFixed32 = try r.readFixed32(wt)
        case 8: fFixed64 = try r.readFixed64(wt)
        case 9: fSFixed32 = try r.readSFixed32(wt)
        case 10: fSFixed64 = try r.readSFixed64(wt)
        case 11: fDouble = try r.readDouble(wt)
        case 12: fFloat = try r.readFloat(wt)
        case 13: fBool = try r.readBool(wt)
        case 14: fString = try r.readString(wt)
        case 15: fBytes = try r.readBytes(wt)
        case 16: fEnum = Color(rawValue: try r.readEnum(wt))
        case 17: try r.mergeMessage(wt, into: &fInner)
        case 18: try r.readRepeatedInt32(wt, into: &rInt32)
        case 19: try r.readRepeatedInt32(wt, into: &rInt32Unpacked)
        case 20: try r.readRepeatedSInt64(wt, into: &rSInt64)
        case 21: try r.readRepeatedDouble(wt, into: &rDouble)
        case 22: rString.append(try r.readString(wt))
        case 23: rBytes.append(try r.readBytes(wt))
        case 24: rInner.append(try r.readMessage(wt))
        case 25: try r.readRepeatedUInt64(wt, into: &rUInt64Unpacked)
        case 26: try r.readRepeatedBool(wt, into: &rBool)
        case 27: try r.readRepeatedFixed32(wt, into: &rFixed32)
        default: return false
        }
        return true
    }

    func encode(to w: inout ProtoWriter) {
        w.write(1, int32: fInt32)
        w.write(2, int64: fInt64)
        w.write(3, uint32: fUInt32)
        w.write(4, uint64: fUInt64)
        w.write(5, sint32: fSInt32)
        w.write(6, sint64: fSInt64)
        w.write(7, fixed32: fFixed32)
        w.write(8, fixed64: fFixed64)
        w.write(9, sfixed32: fSFixed32)
        w.write(10, sfixed64: fSFixed64)
        w.write(11, double: fDouble)
        w.write(12, float: fFloat)
        w.write(13, bool: fBool)
        w.write(14, string: fString)
        w.write(15, bytes: fBytes)
        w.write(16, enum: fEnum.rawValue)
        w.write(17, message: fInner)
        w.write(18, packedInt32: rInt32)
        w.write(19, unpackedInt32: rInt32Unpacked)
        w.write(20, packedSInt64: rSInt64)
        w.write(21, packedDoubles: rDouble)
        w.write(22, strings: rString)
        w.write(23, bytesList: rBytes)
        w.write(24, messages: rInner)
        w.write(25, unpackedUInt64: rUInt64Unpacked)
        w.write(26, packedBools: rBool)
        w.write(27, packedFixed32: rFixed32)
    }
}
