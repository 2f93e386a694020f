// Key custody messages: proto/countersign/v1/custody.proto, hand-written.
// Every message encodes its fields in field-number order and skips proto3 defaults, so that
// `protobufBytes()` is deterministic and a `KeyEventStatement` can be signed as it is encoded.

/// `countersign.v1.KeyStatus`. Open: an unknown number read from the wire is kept.
public struct KeyStatus: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let unspecified = KeyStatus(rawValue: 0)
    /// The key signs new statements.
    public static let active = KeyStatus(rawValue: 1)
    /// The key only verifies statements it signed while it was active.
    public static let retired = KeyStatus(rawValue: 2)
    public static let names = ["UNSPECIFIED", "ACTIVE", "RETIRED"]
    public var description: String {
        rawValue >= 0 && Int(rawValue) < Self.names.count ? Self.names[Int(rawValue)] : "\(rawValue)"
    }
}

/// `countersign.v1.KeyEventKind`. Open: an unknown number read from the wire is kept.
public struct KeyEventKind: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let unspecified = KeyEventKind(rawValue: 0)
    /// The first key of a keyring, signed by itself.
    public static let keyGenerated = KeyEventKind(rawValue: 1)
    /// An officer proposed a rotation; signed by the active key.
    public static let rotationProposed = KeyEventKind(rawValue: 2)
    /// The active key hands over to a new key; signed by both.
    public static let keyTransition = KeyEventKind(rawValue: 3)
    public static let names = ["UNSPECIFIED", "KEY_GENERATED", "ROTATION_PROPOSED", "KEY_TRANSITION"]
    public var description: String {
        rawValue >= 0 && Int(rawValue) < Self.names.count ? Self.names[Int(rawValue)] : "\(rawValue)"
    }
}

/// `countersign.v1.KeyInfo`: a signing key with its validity window.
public struct KeyInfo: ProtoMessage {
    public static let protoName = "countersign.v1.KeyInfo"
    /// Lowercase hex SHA-256 of `spkiDER`.
    public var keyID = ""
    /// DER SubjectPublicKeyInfo.
    public var spkiDER: [UInt8] = []
    /// `ecdsa-p256` or `rsa-pss-4096`.
    public var algorithm = ""
    public var notBeforeUnixMs: Int64 = 0
    /// 0 while the key is active.
    public var notAfterUnixMs: Int64 = 0
    public var status = KeyStatus.unspecified
    public init() {}

    public init(keyID: String, spkiDER: [UInt8], algorithm: String, notBeforeUnixMs: Int64,
                notAfterUnixMs: Int64, status: KeyStatus) {
        self.keyID = keyID
        self.spkiDER = spkiDER
        self.algorithm = algorithm
        self.notBeforeUnixMs = notBeforeUnixMs
        self.notAfterUnixMs = notAfterUnixMs
        self.status = status
    }

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: keyID = try r.readString(wt)
        case 2: spkiDER = try r.readBytes(wt)
        case 3: algorithm = try r.readString(wt)
        case 4: notBeforeUnixMs = try r.readInt64(wt)
        case 5: notAfterUnixMs = try r.readInt64(wt)
        case 6: status = KeyStatus(rawValue: try r.readEnum(wt))
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, string: keyID)
        w.write(2, bytes: spkiDER)
        w.write(3, string: algorithm)
        w.write(4, int64: notBeforeUnixMs)
        w.write(5, int64: notAfterUnixMs)
        w.write(6, enum: status.rawValue)
    }
}

/// `countersign.v1.KeyEventStatement`: the signed payload of a key event
/// (payload type `application/vnd.countersign.key-event+protobuf`).
public struct KeyEventStatement: ProtoMessage {
    public static let protoName = "countersign.v1.KeyEventStatement"
    public var kind = KeyEventKind.unspecified
    /// Transitions: the key that hands over.
    public var oldKeyID = ""
    /// Key-generated and transitions: the new key.
    public var newKeyID = ""
    public var newSPKIDER: [UInt8] = []
    /// Algorithm of the new key, or the one a proposal asks for.
    public var algorithm = ""
    public var proposalID = ""
    /// Officer principal id, or `scheduler` for a rotation because of the key's age.
    public var proposedBy = ""
    /// Officer principal id of the second officer.
    public var approvedBy = ""
    public var reason = ""
    public var occurredAtUnixMs: Int64 = 0
    public var proposedAtUnixMs: Int64 = 0
    /// Proposals: when the proposal lapses.
    public var expiresAtUnixMs: Int64 = 0
    public init() {}

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: kind = KeyEventKind(rawValue: try r.readEnum(wt))
        case 2: oldKeyID = try r.readString(wt)
        case 3: newKeyID = try r.readString(wt)
        case 4: newSPKIDER = try r.readBytes(wt)
        case 5: algorithm = try r.readString(wt)
        case 6: proposalID = try r.readString(wt)
        case 7: proposedBy = try r.readString(wt)
        case 8: approvedBy = try r.readString(wt)
        case 9: reason = try r.readString(wt)
        case 10: occurredAtUnixMs = try r.readInt64(wt)
        case 11: proposedAtUnixMs = try r.readInt64(wt)
        case 12: expiresAtUnixMs = try r.readInt64(wt)
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, enum: kind.rawValue)
        w.write(2, string: oldKeyID)
        w.write(3, string: newKeyID)
        w.write(4, bytes: newSPKIDER)
        w.write(5, string: algorithm)
        w.write(6, string: proposalID)
        w.write(7, string: proposedBy)
        w.write(8, string: approvedBy)
        w.write(9, string: reason)
        w.write(10, int64: occurredAtUnixMs)
        w.write(11, int64: proposedAtUnixMs)
        w.write(12, int64: expiresAtUnixMs)
    }
}

/// `countersign.v1.Signature`: one signature over the DSSE PAE of a statement.
public struct Signature: ProtoMessage {
    public static let protoName = "countersign.v1.Signature"
    public var keyID = ""
    /// DER ECDSA or raw RSA-PSS.
    public var signature: [UInt8] = []
    public init() {}
    public init(keyID: String, signature: [UInt8]) {
        self.keyID = keyID
        self.signature = signature
    }

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: keyID = try r.readString(wt)
        case 2: signature = try r.readBytes(wt)
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, string: keyID)
        w.write(2, bytes: signature)
    }
}

/// `countersign.v1.SignedTransition`: a key-transition statement and its signatures.
public struct SignedTransition: ProtoMessage {
    public static let protoName = "countersign.v1.SignedTransition"
    /// `KeyEventStatement` bytes exactly as signed.
    public var statement: [UInt8] = []
    public var signatures: [Signature] = []
    public init() {}
    public init(statement: [UInt8], signatures: [Signature]) {
        self.statement = statement
        self.signatures = signatures
    }

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: statement = try r.readBytes(wt)
        case 2: signatures.append(try r.readMessage(wt))
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, bytes: statement)
        w.write(2, messages: signatures)
    }
}

/// `countersign.v1.ListKeysRequest` (empty).
public struct ListKeysRequest: ProtoMessage {
    public static let protoName = "countersign.v1.ListKeysRequest"
    public init() {}
    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool { false }
    public func encode(to w: inout ProtoWriter) {}
}

/// `countersign.v1.ListKeysResponse`: every key and the signed transitions between them, oldest first.
public struct ListKeysResponse: ProtoMessage {
    public static let protoName = "countersign.v1.ListKeysResponse"
    public var keys: [KeyInfo] = []
    public var transitions: [SignedTransition] = []
    public init() {}
    public init(keys: [KeyInfo], transitions: [SignedTransition]) {
        self.keys = keys
        self.transitions = transitions
    }

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: keys.append(try r.readMessage(wt))
        case 2: transitions.append(try r.readMessage(wt))
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, messages: keys)
        w.write(2, messages: transitions)
    }
}

/// `countersign.v1.ProposeRotationRequest`.
public struct ProposeRotationRequest: ProtoMessage {
    public static let protoName = "countersign.v1.ProposeRotationRequest"
    public var reason = ""
    /// Empty: the configured `token.key_algorithm`.
    public var algorithm = ""
    public init() {}
    public init(reason: String, algorithm: String = "") {
        self.reason = reason
        self.algorithm = algorithm
    }

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: reason = try r.readString(wt)
        case 2: algorithm = try r.readString(wt)
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, string: reason)
        w.write(2, string: algorithm)
    }
}

/// `countersign.v1.RotationProposal`: a proposal waiting for a second officer.
public struct RotationProposal: ProtoMessage {
    public static let protoName = "countersign.v1.RotationProposal"
    public var proposalID = ""
    public var proposedBy = ""
    public var proposedAtUnixMs: Int64 = 0
    public var expiresAtUnixMs: Int64 = 0
    public var algorithm = ""
    public var reason = ""
    public init() {}

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: proposalID = try r.readString(wt)
        case 2: proposedBy = try r.readString(wt)
        case 3: proposedAtUnixMs = try r.readInt64(wt)
        case 4: expiresAtUnixMs = try r.readInt64(wt)
        case 5: algorithm = try r.readString(wt)
        case 6: reason = try r.readString(wt)
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, string: proposalID)
        w.write(2, string: proposedBy)
        w.write(3, int64: proposedAtUnixMs)
        w.write(4, int64: expiresAtUnixMs)
        w.write(5, string: algorithm)
        w.write(6, string: reason)
    }
}

/// `countersign.v1.ApproveRotationRequest`.
public struct ApproveRotationRequest: ProtoMessage {
    public static let protoName = "countersign.v1.ApproveRotationRequest"
    public var proposalID = ""
    public init() {}
    public init(proposalID: String) { self.proposalID = proposalID }

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: proposalID = try r.readString(wt)
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, string: proposalID)
    }
}

/// `countersign.v1.RotationResult`: the new active key and the transition that announces it.
public struct RotationResult: ProtoMessage {
    public static let protoName = "countersign.v1.RotationResult"
    public var newKey: KeyInfo?
    public var transition: SignedTransition?
    public init() {}
    public init(newKey: KeyInfo, transition: SignedTransition) {
        self.newKey = newKey
        self.transition = transition
    }

    public mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: newKey = try r.readMessage(wt)
        case 2: transition = try r.readMessage(wt)
        default: return false
        }
        return true
    }

    public func encode(to w: inout ProtoWriter) {
        w.write(1, message: newKey)
        w.write(2, message: transition)
    }
}
