import Crypto
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

/// Reads which key a key-event statement introduces.
///
/// The statement is a `KeyEventStatement` of `proto/countersign/v1/custody.proto`: a key
/// transition (`kind` = `KEY_EVENT_KIND_KEY_TRANSITION` = 3) names the new key by its DER
/// SubjectPublicKeyInfo (`new_spki_der` = 4) and key id (`new_key_id` = 3, which must match).
/// A verifier trusts that key only when the key-event statement itself is signed by a key it
/// already trusts (see `countersign ledger verify`); a transition is ledgered twice, once signed by
/// each key, so the first of the two introduces the new key.
public enum KeyEvents {
    /// `KeyEventStatement.kind` of a key transition.
    public static let keyTransition: UInt64 = 3

    /// The keys a key-event statement introduces: the new key of a key transition, or none.
    public static func introducedKeys(in statement: [UInt8]) -> [VerificationKey] {
        guard var reader = try? ProtoReader(statement) else { return [] }
        var kind: UInt64 = 0
        var newKeyID: String?
        var spki: [UInt8]?
        while let field = try? reader.nextField() {
            switch (field.number, field.wireType) {
            case (1, .varint):
                guard let v = try? reader.readUInt64(field.wireType) else { return [] }
                kind = v
            case (3, .lengthDelimited):
                guard let v = try? reader.readString(field.wireType) else { return [] }
                newKeyID = v
            case (4, .lengthDelimited):
                guard let v = try? reader.readBytes(field.wireType) else { return [] }
                spki = v
            default:
                guard (try? reader.skip(field.wireType)) != nil else { return [] }
            }
        }
        guard kind == keyTransition, let spki, let key = try? VerificationKey(spkiDER: spki) else { return [] }
        if let newKeyID, newKeyID != key.keyID { return [] }
        return [key]
    }
}
