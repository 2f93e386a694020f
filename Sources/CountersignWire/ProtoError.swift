/// An error from decoding protobuf bytes or a frame. Every case maps to `INVALID_ARGUMENT` on the
/// wire (`RESOURCE_EXHAUSTED` for ``Code/tooLarge``); none of them is ever a crash.
public struct ProtoError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Value: Hashable, Sendable {
            case truncated, overlongVarint, invalidWireType, wrongWireType, invalidFieldNumber
            case invalidUTF8, tooDeep, tooLarge, invalidValue
        }
        let value: Value
        /// The input ends inside a value or declares more bytes than it has.
        public static let truncated = Code(value: .truncated)
        /// A varint of more than 10 bytes, or one whose 10th byte carries more than one bit.
        public static let overlongVarint = Code(value: .overlongVarint)
        /// Wire types 6 and 7, and the deprecated groups (3, 4).
        public static let invalidWireType = Code(value: .invalidWireType)
        /// A known field arrived with a wire type its schema type cannot have.
        public static let wrongWireType = Code(value: .wrongWireType)
        /// Field number 0 or above 2^29 − 1.
        public static let invalidFieldNumber = Code(value: .invalidFieldNumber)
        /// A `string` field that is not valid UTF-8.
        public static let invalidUTF8 = Code(value: .invalidUTF8)
        /// Messages nested deeper than ``ProtoLimits/maxDepth``.
        public static let tooDeep = Code(value: .tooDeep)
        /// Input larger than ``ProtoLimits/maxMessageBytes``.
        public static let tooLarge = Code(value: .tooLarge)
        /// A value outside what the field allows (a semantic check of a message).
        public static let invalidValue = Code(value: .invalidValue)

        public var description: String {
            switch value {
            case .truncated: "truncated"
            case .overlongVarint: "overlong varint"
            case .invalidWireType: "invalid wire type"
            case .wrongWireType: "wrong wire type"
            case .invalidFieldNumber: "invalid field number"
            case .invalidUTF8: "invalid UTF-8"
            case .tooDeep: "nesting too deep"
            case .tooLarge: "too large"
            case .invalidValue: "invalid value"
            }
        }
    }

    public var code: Code
    /// Which field, where known (for example `Envelope.body` or `field 7`).
    public var field: String
    /// Byte offset in the decoded buffer where the problem was found.
    public var offset: Int

    public init(_ code: Code, field: String = "", offset: Int = 0) {
        self.code = code
        self.field = field
        self.offset = offset
    }

    public var description: String {
        field.isEmpty ? "\(code) at byte \(offset)" : "\(code) in \(field) at byte \(offset)"
    }
}

/// Bounds that every decode obeys. Defaults: ``defaults``.
public struct ProtoLimits: Hashable, Sendable {
    /// Deepest nesting of messages accepted. Default 32.
    public var maxDepth: Int
    /// Largest message accepted, in bytes. Default 4 MiB (the default frame limit).
    public var maxMessageBytes: Int

    public init(maxDepth: Int = 32, maxMessageBytes: Int = 4 << 20) {
        self.maxDepth = maxDepth
        self.maxMessageBytes = maxMessageBytes
    }

    /// `maxDepth` 32, `maxMessageBytes` 4 MiB.
    public static let defaults = ProtoLimits()
}
