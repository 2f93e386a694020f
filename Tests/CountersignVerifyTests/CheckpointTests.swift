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

    @Test func keyTransitionsNameTheirNewKey() throws {
        let next = P256.Signing.PrivateKey()
        let spki = Array(next.publicKey.derRepresentation)
        let id = KeyID.of(spkiDER: spki)
        func statement(kind: UInt8, keyID: String) -> [UInt8] {
            // KeyEventStatement: kind = 1 (varint), old_key_id = 2, new_key_id = 3, new_spki_der = 4.
            var s: [UInt8] = [0x08, kind]
            s += [0x12, 0x03] + Array("old".utf8)
            s += [0x1A, UInt8(keyID.utf8.count)] + Array(keyID.utf8)
            s += [0x22, UInt8(spki.count)] + spki
            return s
        }
        #expect(KeyEvents.introducedKeys(in: statement(kind: 3, keyID: id)).map(\.keyID) == [id])
        #expect(KeyEvents.introducedKeys(in: statement(kind: 2, keyID: id)).isEmpty)        // a proposal
        #expect(KeyEvents.introducedKeys(in: statement(kind: 3, keyID: String(repeating: "0", count: 64))).isEmpty)  // id mismatch
        #expect(KeyEvents.introducedKeys(in: [0xFF, 0xFF]).isEmpty)
    }
}
