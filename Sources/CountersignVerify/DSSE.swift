import Crypto
import _CryptoExtras

/// DSSE (Dead Simple Signing Envelope) pre-authentication encoding, as DESIGN.md fixes it:
/// `"DSSEv1" SP len(type) SP type SP len(body) SP body`, lengths in ASCII decimal.
public enum DSSE {
    /// The bytes that are signed for `payload` of `payloadType`.
    public static func pae(payloadType: String, payload: [UInt8]) -> [UInt8] {
        let type = Array(payloadType.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(payload.count + type.count + 32)
        out.append(contentsOf: "DSSEv1 ".utf8)
        out.append(contentsOf: String(type.count).utf8)
        out.append(0x20)
        out.append(contentsOf: type)
        out.append(0x20)
        out.append(contentsOf: String(payload.count).utf8)
        out.append(0x20)
        out.append(contentsOf: payload)
        return out
    }
}

/// A public key that verifies statements: ECDSA P-256 (DER signatures) or RSA-PSS
/// (SHA-256, MGF1-SHA-256, 32-byte salt).
public struct VerificationKey: Sendable, Hashable {
    public enum Algorithm: String, Sendable, Hashable {
        case ecdsaP256 = "ecdsa-p256"
        case rsaPSS = "rsa-pss"
    }

    /// DER SubjectPublicKeyInfo.
    public let spkiDER: [UInt8]
    public let algorithm: Algorithm
    /// Lowercase hex SHA-256 of `spkiDER`.
    public let keyID: String

    /// Reads a DER SubjectPublicKeyInfo.
    /// - Throws: ``VerificationError`` when it is neither a P-256 nor an RSA key of at least 2048 bits.
    public init(spkiDER: [UInt8]) throws {
        if (try? P256.Signing.PublicKey(derRepresentation: spkiDER)) != nil {
            algorithm = .ecdsaP256
        } else if (try? _RSA.Signing.PublicKey(derRepresentation: spkiDER)) != nil {
            algorithm = .rsaPSS
        } else {
            throw VerificationError(.unsupportedKey, "not a P-256 or RSA SubjectPublicKeyInfo")
        }
        self.spkiDER = spkiDER
        self.keyID = KeyID.of(spkiDER: spkiDER)
    }

    /// Whether `signature` is this key's signature over the DSSE PAE of the statement.
    public func verifies(signature: [UInt8], payloadType: String, payload: [UInt8]) -> Bool {
        isValidSignature(signature, over: DSSE.pae(payloadType: payloadType, payload: payload))
    }

    /// Whether `signature` is this key's signature over `message` (hashed with SHA-256).
    public func isValidSignature(_ signature: [UInt8], over message: [UInt8]) -> Bool {
        let digest = SHA256.hash(data: message)
        switch algorithm {
        case .ecdsaP256:
            guard let key = try? P256.Signing.PublicKey(derRepresentation: spkiDER),
                  let sig = try? P256.Signing.ECDSASignature(derRepresentation: signature) else { return false }
            return key.isValidSignature(sig, for: digest)
        case .rsaPSS:
            guard let key = try? _RSA.Signing.PublicKey(derRepresentation: spkiDER) else { return false }
            return key.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: digest, padding: .PSS)
        }
    }

    /// Checks a signed statement: the key id must be this key's and the signature must verify.
    /// - Throws: ``VerificationError``.
    public func verify(_ statement: SignedStatement) throws {
        guard statement.keyID == keyID else {
            throw VerificationError(.wrongKey, "statement names key \(statement.keyID), this key is \(keyID)")
        }
        guard verifies(signature: statement.signature, payloadType: statement.payloadType, payload: statement.payload) else {
            throw VerificationError(.badSignature, "signature does not verify with key \(keyID)")
        }
    }
}

/// Key ids: the lowercase hex SHA-256 of a key's DER SubjectPublicKeyInfo.
public enum KeyID {
    public static func of(spkiDER: [UInt8]) -> String {
        Hex.encode(Array(SHA256.hash(data: spkiDER)))
    }
}

/// Lowercase hexadecimal.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var out: [UInt8] = []
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes hex (either case); `nil` for odd length or a non-hex character.
    public static func decode(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 2)
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var i = 0
        while i < chars.count {
            guard let hi = value(chars[i]), let lo = value(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}

/// A verification that failed, and why.
public struct VerificationError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Value: Hashable, Sendable { case unsupportedKey, wrongKey, badSignature, unknownKey, badProof, badCheckpoint, malformed }
        let value: Value
        public static let unsupportedKey = Code(value: .unsupportedKey)
        public static let wrongKey = Code(value: .wrongKey)
        public static let badSignature = Code(value: .badSignature)
        public static let unknownKey = Code(value: .unknownKey)
        public static let badProof = Code(value: .badProof)
        public static let badCheckpoint = Code(value: .badCheckpoint)
        public static let malformed = Code(value: .malformed)
        public var description: String { "\(value)" }
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
