import Crypto
import Foundation
import Testing
@testable import CountersignVerify

@Suite struct CheckpointTests {
    @Test func formatsAndParsesTheC2SPForm() throws {
        let root = Array(repeating: UInt8(7), count: 32)
        let cp = Checkpoint(origin: "countersign.dev.local/ledger", treeSize: 1234, rootHash: root)
        #expect(cp.text == "countersign.dev.local/ledger\n1234\n\(Data(root).base64EncodedString())\n")
        let parsed = try Checkpoint(parsing: cp.bytes)
        #expect(parsed == cp)
        let withExt = Checkpoint(origin: "o", treeSize: 0, rootHash: root, extensions: ["ext one"])
        #expect(try Checkpoint(parsing: withExt.bytes) == withExt)
    }

    @Test(arguments: [
        "o\n12\n",                                  // no root line
        "o\n012\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n", // leading zero
        "o\n12\nBwcH\n",                            // short hash
        "o\n12\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",   // no final newline
        "\n12\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",  // empty origin
        "o\n-1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n", // sign
        "o\n12\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n\n", // empty extension
    ])
    func refusesMalformedText(text: String) {
        #expect(throws: VerificationError.self) { try Checkpoint(parsing: Array(text.utf8)) }
    }

    @Test func trustedKeysVerifyAndReadPEM() throws {
        let key = P256.Signing.PrivateKey()
        let vk = try VerificationKey(spkiDER: Array(key.publicKey.derRepresentation))
        let keys = try TrustedKeys.keys(fromPEM: key.publicKey.pemRepresentation)
        #expect(keys == [vk])
        let trusted = TrustedKeys(keys)
        let body = Checkpoint(origin: "o", treeSize: 1, rootHash: Array(repeating: 1, count: 32)).bytes
        let sig = try key.signature(for: SHA256.hash(data: DSSE.pae(payloadType: PayloadType.checkpoint, payload: body)))
        try trusted.verify(payloadType: PayloadType.checkpoint, payload: body, signature: Array(sig.derRepresentation), keyID: vk.keyID)
        #expect(throws: VerificationError.self) {
            try trusted.verify(payloadType: PayloadType.checkpoint, payload: body + [0x0A], signature: Array(sig.derRepresentation), keyID: vk.keyID)
        }
        #expect(throws: VerificationError.self) {
            try TrustedKeys().verify(payloadType: PayloadType.checkpoint, payload: body, signature: Array(sig.derRepresentation), keyID: vk.keyID)
        }
    }

    @Test func keyEventsNameTheirKeys() throws {
        let next = P256.Signing.PrivateKey()
        let spki = Array(next.publicKey.derRepresentation)
        // field 1: a string; field 2: a nested message holding the SPKI in its field 3.
        var nested: [UInt8] = [0x1A, UInt8(spki.count)] + spki
        nested = [0x08, 0x01] + nested
        var statement: [UInt8] = [0x0A, 0x03] + Array("abc".utf8)
        statement += [0x12, UInt8(nested.count)] + nested
        let keys = KeyEvents.introducedKeys(in: statement)
        #expect(keys.map(\.keyID) == [KeyID.of(spkiDER: spki)])
        #expect(KeyEvents.introducedKeys(in: [0xFF, 0xFF]).isEmpty)
    }
}
