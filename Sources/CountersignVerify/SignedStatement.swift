/// The media types of the signed statements (DSSE payload types). Fixed by DESIGN.md.
public enum PayloadType {
    public static let decision = "application/vnd.countersign.decision+protobuf"
    public static let execution = "application/vnd.countersign.execution+protobuf"
    public static let override = "application/vnd.countersign.override+protobuf"
    public static let keyEvent = "application/vnd.countersign.key-event+protobuf"
    public static let refusal = "application/vnd.countersign.refusal+protobuf"
    public static let checkpoint = "application/vnd.countersign.checkpoint+text"
}

/// A statement and its signature: the DSSE payload (exactly the bytes that were signed through
/// PAE), its payload type, and which key signed it.
public struct SignedStatement: Sendable, Hashable {
    public var payloadType: String
    /// The statement bytes (the DSSE payload, not the PAE).
    public var payload: [UInt8]
    /// DER ECDSA or raw RSA-PSS signature over `PAE(payloadType, payload)`.
    public var signature: [UInt8]
    /// Lowercase hex SHA-256 of the signing key's DER SubjectPublicKeyInfo.
    public var keyID: String

    public init(payloadType: String, payload: [UInt8], signature: [UInt8], keyID: String) {
        self.payloadType = payloadType
        self.payload = payload
        self.signature = signature
        self.keyID = keyID
    }
}

/// Something that signs statements with the active key: the PKCS#11 signer in the product.
/// Implementations fail (throw) rather than return anything unsigned.
public protocol StatementSigner: Sendable {
    /// Key id of the key that `sign` uses now.
    var activeKeyID: String { get async throws }
    /// Signs `PAE(payloadType, payload)` with the active key.
    func sign(payloadType: String, payload: [UInt8]) async throws -> SignedStatement
    /// Signs `PAE(payloadType, payload)` with the key `keyID`, active or not (a checkpoint signs
    /// with the key that was active before it read its tree).
    func sign(payloadType: String, payload: [UInt8], keyID: String) async throws -> SignedStatement
}
