import CountersignConfig
import CountersignVerify
import NIOCore
import NIOSSL

/// Why a TLS handshake was refused. Bounded set: used as a metric label.
public enum HandshakeRejection: String, Sendable, CaseIterable {
    case noClientCertificate = "no_client_certificate"
    case unknownCA = "unknown_ca"
    case unpinnedKey = "unpinned_spki"
    case tlsVersion = "tls_version"
    case notTLS = "not_tls"
    case timeout = "handshake_timeout"
    case other = "other"

    /// Classifies a handshake error from BoringSSL by its reason string.
    static func classify(_ error: any Error) -> HandshakeRejection {
        let text = String(describing: error).uppercased()
        if text.contains("PEER_DID_NOT_RETURN_A_CERTIFICATE") || text.contains("CERTIFICATE_REQUIRED") { return .noClientCertificate }
        if text.contains("CERTIFICATE_VERIFY_FAILED") || text.contains("UNKNOWN_CA") { return .unknownCA }
        if text.contains("UNSUPPORTED_PROTOCOL") || text.contains("PROTOCOL_VERSION") || text.contains("NO_SUPPORTED_VERSIONS") { return .tlsVersion }
        if text.contains("WRONG_VERSION_NUMBER") || text.contains("HTTP_REQUEST") || text.contains("PACKET_LENGTH_TOO_LONG")
            || text.contains("RECORD_LENGTH_MISMATCH") || text.contains("WRONG_VERSION") { return .notTLS }
        return .other
    }
}

/// The SHA-256 pin (lowercase hex) of a certificate's SubjectPublicKeyInfo.
func spkiPin(of certificate: NIOSSLCertificate) throws -> String {
    KeyID.of(spkiDER: try certificate.extractPublicKey().toSPKIBytes())
}

/// A certificate whose key is not pinned, refused by the handshake.
struct UnpinnedCertificate: Error, CustomStringConvertible {
    let pin: String
    var description: String { "client certificate key \(pin) is not pinned" }
}

extension TLSSettings {
    /// TLS 1.3 only; a client certificate is required and must chain to `client_ca` (checked by
    /// BoringSSL); the pin is checked after that, in the handshake (see `WireServer`).
    func makeServerContext() throws -> NIOSSLContext {
        let chain = try NIOSSLCertificate.fromPEMFile(certificatePath)
        let key = try NIOSSLPrivateKey(file: privateKeyPath, format: .pem)
        let roots = try NIOSSLCertificate.fromPEMFile(clientCAPath)
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        tls.minimumTLSVersion = .tlsv13
        tls.maximumTLSVersion = .tlsv13
        tls.certificateVerification = .noHostnameVerification
        tls.trustRoots = .certificates(roots)
        tls.sendCANameList = true
        return try NIOSSLContext(configuration: tls)
    }
}
