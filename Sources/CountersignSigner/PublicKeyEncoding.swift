import Crypto

/// Builds DER SubjectPublicKeyInfo values from the attributes a token reports, and converts
/// signatures into the published form.
enum PublicKeyEncoding {
    /// SPKI of a P-256 key from `CKA_EC_POINT` (a DER OCTET STRING around the uncompressed point,
    /// or the bare point, as some modules return it).
    static func p256SPKI(ecPoint: [UInt8]) throws -> [UInt8] {
        var point = ecPoint
        if point.count == 67, point[0] == 0x04, point[1] == 65 { point = Array(point[2...]) }
        guard point.count == 65, point[0] == 0x04 else {
            throw SignerError(.unavailable, "token returned an unexpected CKA_EC_POINT (\(ecPoint.count) bytes)")
        }
        let key = try P256.Signing.PublicKey(x963Representation: point)
        return Array(key.derRepresentation)
    }

    /// SPKI (rsaEncryption) of an RSA key from `CKA_MODULUS` and `CKA_PUBLIC_EXPONENT`.
    static func rsaSPKI(modulus: [UInt8], exponent: [UInt8]) -> [UInt8] {
        let rsaPublicKey = sequence(integer(modulus) + integer(exponent))
        let algorithm = sequence([0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01, 0x05, 0x00])
        let bitString = [0x03] + length(rsaPublicKey.count + 1) + [0x00] + rsaPublicKey
        return sequence(algorithm + bitString)
    }

    /// PEM text of a DER SPKI.
    static func pem(spkiDER: [UInt8]) -> String {
        let b64 = Base64.encode(spkiDER)
        var lines = ["-----BEGIN PUBLIC KEY-----"]
        var i = b64.startIndex
        while i < b64.endIndex {
            let j = b64.index(i, offsetBy: 64, limitedBy: b64.endIndex) ?? b64.endIndex
            lines.append(String(b64[i..<j]))
            i = j
        }
        lines.append("-----END PUBLIC KEY-----")
        return lines.joined(separator: "\n") + "\n"
    }

    /// DER ECDSA-Sig-Value from the token's raw r‖s.
    /// (ASN.1 SEQUENCE of two INTEGERs; written by hand, it is on the hot path.)
    static func ecdsaDER(raw: [UInt8]) throws -> [UInt8] {
        guard raw.count == 64 else {
            throw SignerError(.unavailable, "token returned a \(raw.count)-byte ECDSA signature, not 64")
        }
        let r = integer(raw[0..<32]), s = integer(raw[32..<64])
        var out: [UInt8] = []
        out.reserveCapacity(2 + r.count + s.count)
        out.append(0x30)
        out.append(UInt8(r.count + s.count))  // at most 70: short form
        out.append(contentsOf: r)
        out.append(contentsOf: s)
        return out
    }

    private static func integer(_ magnitude: some Collection<UInt8>) -> [UInt8] {
        var m = Array(magnitude.drop { $0 == 0 })
        if m.isEmpty { m = [0] }
        if m[0] & 0x80 != 0 { m.insert(0, at: 0) }
        return [0x02] + length(m.count) + m
    }

    private static func sequence(_ content: [UInt8]) -> [UInt8] { [0x30] + length(content.count) + content }

    private static func length(_ n: Int) -> [UInt8] {
        if n < 0x80 { return [UInt8(n)] }
        var bytes: [UInt8] = []
        var v = n
        while v > 0 { bytes.insert(UInt8(v & 0xFF), at: 0); v >>= 8 }
        return [0x80 | UInt8(bytes.count)] + bytes
    }
}

/// Standard base64 without line breaks.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ data: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((data.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= data.count {
            let v = UInt32(data[i]) << 16 | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2])
            out += [alphabet[Int(v >> 18 & 63)], alphabet[Int(v >> 12 & 63)], alphabet[Int(v >> 6 & 63)], alphabet[Int(v & 63)]]
            i += 3
        }
        let rest = data.count - i
        if rest == 1 {
            let v = UInt32(data[i]) << 16
            out += [alphabet[Int(v >> 18 & 63)], alphabet[Int(v >> 12 & 63)], UInt8(ascii: "="), UInt8(ascii: "=")]
        } else if rest == 2 {
            let v = UInt32(data[i]) << 16 | UInt32(data[i + 1]) << 8
            out += [alphabet[Int(v >> 18 & 63)], alphabet[Int(v >> 12 & 63)], alphabet[Int(v >> 6 & 63)], UInt8(ascii: "=")]
        }
        return String(decoding: out, as: UTF8.self)
    }
}
