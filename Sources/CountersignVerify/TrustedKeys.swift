public import Crypto
import _CryptoExtras
import CountersignWire
import Foundation

/// A set of keys a verifier trusts, parsed once so that checking a million signatures does not
/// parse a million keys. Keys are found by key id (lowercase hex SHA-256 of the DER SPKI).
public struct TrustedKeys: Sendable {
    private enum Parsed: Sendable {
        case p256(P256.Signing.PublicKey)
        case rsa(_RSA.Signing.PublicKey)
    }

    private var parsed: [String: Parsed] = [:]
    /// The trusted keys by key id.
    public private(set) var keys: [String: VerificationKey] = [:]

    public init() {}

    /// Trusts the given keys.
    public init(_ keys: [VerificationKey]) {
        for k in keys { insert(k) }
    }

    /// Trusts `key`.
    public mutating func insert(_ key: VerificationKey) {
        guard keys[key.keyID] == nil else { return }
        switch key.algorithm {
        case .ecdsaP256:
            guard let k = try? P256.Signing.PublicKey(derRepresentation: key.spkiDER) else { return }
            parsed[key.keyID] = .p256(k)
        case .rsaPSS:
            guard let k = try? _RSA.Signing.PublicKey(derRepresentation: key.spkiDER) else { return }
            parsed[key.keyID] = .rsa(k)
        }
        keys[key.keyID] = key
    }

    /// Whether `keyID` is trusted.
    public func contains(_ keyID: String) -> Bool { keys[keyID] != nil }

    /// Checks a DSSE signature by a trusted key.
    /// - Throws: ``VerificationError``: `unknownKey` when the key id is not trusted, `badSignature`
    ///   when the signature does not verify.
    public func verify(payloadType: String, payload: [UInt8], signature: [UInt8], keyID: String) throws {
        guard let key = parsed[keyID] else {
            throw VerificationError(.unknownKey, "key \(keyID) is not trusted")
        }
        let digest = SHA256.hash(data: DSSE.pae(payloadType: payloadType, payload: payload))
        let ok: Bool
        switch key {
        case .p256(let k):
            if let sig = try? P256.Signing.ECDSASignature(derRepresentation: signature) {
                ok = k.isValidSignature(sig, for: digest)
            } else {
                ok = false
            }
        case .rsa(let k):
            ok = k.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: digest, padding: .PSS)
        }
        guard ok else { throw VerificationError(.badSignature, "signature does not verify with key \(keyID)") }
    }

    /// Checks a signed statement by a trusted key. See ``verify(payloadType:payload:signature:keyID:)``.
    public func verify(_ statement: SignedStatement) throws {
        try verify(payloadType: statement.payloadType, payload: statement.payload, signature: statement.signature, keyID: statement.keyID)
    }

    /// Reads every PEM `PUBLIC KEY` block (DER SubjectPublicKeyInfo) in `pem`.
    /// - Throws: ``VerificationError`` (`malformed`, `unsupportedKey`).
    public static func keys(fromPEM pem: String) throws -> [VerificationKey] {
        var out: [VerificationKey] = []
        var inside = false
        var body = ""
        for line in pem.split(whereSeparator: \.isNewline) {
            let l = line.trimmingCharacters(in: .whitespaces)
            if l == "-----BEGIN PUBLIC KEY-----" {
                inside = true
                body = ""
            } else if l == "-----END PUBLIC KEY-----" {
                guard inside, let der = Data(base64Encoded: body) else {
                    throw VerificationError(.malformed, "bad PEM PUBLIC KEY block")
                }
                out.append(try VerificationKey(spkiDER: Array(der)))
                inside = false
            } else if inside {
                body += l
            }
        }
        guard !out.isEmpty else { throw VerificationError(.malformed, "no PEM PUBLIC KEY block") }
        return out
    }
}

/// Reads which keys a key-event statement introduces.
///
/// - Important: Provisional until the key-event message of `proto/countersign/v1/custody.proto`
///   is fixed: every length-delimited field of the statement (top level, and one level of nested
///   messages) that is a valid P-256 or RSA DER SubjectPublicKeyInfo counts as a key the event
///   names. A verifier trusts such a key only when the key-event statement itself is signed by a
///   key it already trusts (see `countersign ledger verify`).
public enum KeyEvents {
    /// The keys a key-event statement names.
    public static func introducedKeys(in statement: [UInt8]) -> [VerificationKey] {
        var out: [VerificationKey] = []
        scan(statement, depth: 0, into: &out)
        var seen = Set<String>()
        return out.filter { seen.insert($0.keyID).inserted }
    }

    private static func scan(_ bytes: [UInt8], depth: Int, into out: inout [VerificationKey]) {
        guard var reader = try? ProtoReader(bytes) else { return }
        while let field = try? reader.nextField() {
            if field.wireType == .lengthDelimited {
                guard let value = try? reader.readBytes(field.wireType) else { return }
                if value.first == 0x30, let key = try? VerificationKey(spkiDER: value) {
                    out.append(key)
                } else if depth < 1 {
                    scan(value, depth: depth + 1, into: &out)
                }
            } else {
                guard (try? reader.skip(field.wireType)) != nil else { return }
            }
        }
    }
}
