public import NIOCore

/// The frame layout, both directions: `flags: UInt8` (must be 0), `length: UInt32` big-endian,
/// then `length` bytes of an ``Envelope``.
public enum Frame {
    /// Bytes before the payload.
    public static let headerSize = 5
    /// The default largest payload: 4 MiB.
    public static let defaultMaxBytes = 4 << 20

    /// Appends one frame holding `envelope` to `buffer`.
    public static func write(_ envelope: Envelope, into buffer: inout ByteBuffer) {
        let payload = envelope.protobufBytes()
        buffer.reserveCapacity(minimumWritableBytes: headerSize + payload.count)
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt32(payload.count), endianness: .big)
        buffer.writeBytes(payload)
    }

    /// One frame holding `envelope`, as bytes.
    public static func bytes(of envelope: Envelope) -> [UInt8] {
        let payload = envelope.protobufBytes()
        var out: [UInt8] = [0]
        out.reserveCapacity(headerSize + payload.count)
        withUnsafeBytes(of: UInt32(payload.count).bigEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: payload)
        return out
    }
}

/// A frame that must be refused from its header alone: the connection is answered with `call_id` 0
/// and closed.
public struct FrameError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Reason: Hashable, Sendable {
        /// The flags byte is not 0 (bit 0 would mean compressed, which is not supported).
        case unsupportedFlags(UInt8)
        /// The declared length is above the limit.
        case tooLarge(declared: UInt32, limit: Int)
        /// The peer closed the connection in the middle of a frame.
        case truncated(have: Int)
    }

    public var reason: Reason

    public init(_ reason: Reason) { self.reason = reason }

    /// `RESOURCE_EXHAUSTED` for an oversize frame, `INVALID_ARGUMENT` otherwise.
    public var status: Status {
        switch reason {
        case .unsupportedFlags(let f): Status(.invalidArgument, "frame flags must be 0, not \(f) (compression is not supported)")
        case .tooLarge(let declared, let limit): Status(.resourceExhausted, "frame of \(declared) bytes exceeds the limit of \(limit) bytes")
        case .truncated(let have): Status(.invalidArgument, "connection closed inside a frame (\(have) bytes of it received)")
        }
    }

    public var description: String { status.message }
}

/// Splits a byte stream into frame payloads. The header is checked, and the declared size against
/// the limit, before anything is buffered; an incomplete payload waits without copying.
public struct FrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = ByteBuffer

    public let maxFrameBytes: Int

    public init(maxFrameBytes: Int = Frame.defaultMaxBytes) {
        self.maxFrameBytes = maxFrameBytes
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> ByteBuffer? {
        guard let flags = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return nil }
        guard flags == 0 else { throw FrameError(.unsupportedFlags(flags)) }
        guard let length = buffer.getInteger(at: buffer.readerIndex + 1, endianness: .big, as: UInt32.self) else { return nil }
        let size = try Self.payloadSize(flags: flags, length: length, maxFrameBytes: maxFrameBytes)
        guard buffer.readableBytes >= Frame.headerSize + size else { return nil }
        buffer.moveReaderIndex(forwardBy: Frame.headerSize)
        return buffer.readSlice(length: size)
    }

    /// The payload size a frame header declares, or the error the decoder refuses the frame with
    /// (flags other than 0, a size above `maxFrameBytes`).
    public static func payloadSize(flags: UInt8, length: UInt32, maxFrameBytes: Int) throws(FrameError) -> Int {
        guard flags == 0 else { throw FrameError(.unsupportedFlags(flags)) }
        guard Int(length) <= maxFrameBytes else { throw FrameError(.tooLarge(declared: length, limit: maxFrameBytes)) }
        return Int(length)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> ByteBuffer? {
        if let frame = try decode(buffer: &buffer) { return frame }
        if buffer.readableBytes > 0 {
            let have = buffer.readableBytes
            buffer.moveReaderIndex(forwardBy: have)
            throw FrameError(.truncated(have: have))
        }
        return nil
    }
}
