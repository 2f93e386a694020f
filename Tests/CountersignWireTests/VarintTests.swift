import Testing
@testable import CountersignWire

@Suite struct VarintTests {
    @Test(arguments: [UInt64(0), 1, 127, 128, 300, 16_383, 16_384, UInt64(UInt32.max), UInt64.max])
    func roundTrip(_ value: UInt64) throws {
        var writer = ProtoWriter()
        writer.writeVarint(value)
        var reader = try ProtoReader(writer.bytes)
        #expect(try reader.readVarint() == value)
        #expect(reader.isAtEnd)
    }

    @Test func knownEncoding() {
        var writer = ProtoWriter()
        writer.writeVarint(300)
        #expect(writer.bytes == [0xAC, 0x02])
    }

    @Test func rejectsOverlong() throws {
        // 11 bytes of continuation: longer than any 64-bit varint.
        var reader = try ProtoReader([UInt8](repeating: 0x80, count: 10) + [0x01])
        #expect(throws: ProtoError.self) { try reader.readVarint() }
        // 10 bytes whose last byte carries more than the 64th bit.
        var reader2 = try ProtoReader([UInt8](repeating: 0xFF, count: 9) + [0x02])
        #expect(throws: ProtoError.self) { try reader2.readVarint() }
    }

    @Test func rejectsTruncated() throws {
        var reader = try ProtoReader([0x80, 0x80])
        #expect(throws: ProtoError.self) { try reader.readVarint() }
    }

    @Test(arguments: [Int64(0), -1, 1, Int64.min, Int64.max, -64, 63])
    func zigzag(_ value: Int64) {
        #expect(ZigZag.decode(ZigZag.encode(value)) == value)
    }
}
