import Crypto
import Testing
@testable import CountersignVerify

@Suite struct DSSETests {
    @Test func paeMatchesTheSpecification() {
        // The example from the DSSE protocol document.
        let pae = DSSE.pae(payloadType: "http://example.com/HelloWorld", payload: Array("hello world".utf8))
        #expect(String(decoding: pae, as: UTF8.self) == "DSSEv1 29 http://example.com/HelloWorld 11 hello world")
    }

    @Test func ecdsaSignatureVerifiesAndTamperingFails() throws {
        let key = P256.Signing.PrivateKey()
        let payload: [UInt8] = Array("statement".utf8)
        let sig = try key.signature(for: SHA256.hash(data: DSSE.pae(payloadType: PayloadType.decision, payload: payload)))
        let vk = try VerificationKey(spkiDER: Array(key.publicKey.derRepresentation))
        #expect(vk.algorithm == .ecdsaP256)
        let statement = SignedStatement(payloadType: PayloadType.decision, payload: payload,
                                        signature: Array(sig.derRepresentation), keyID: vk.keyID)
        try vk.verify(statement)
        var tamperedBody = statement
        tamperedBody.payload[0] ^= 1
        #expect(throws: VerificationError.self) { try vk.verify(tamperedBody) }
        var tamperedType = statement
        tamperedType.payloadType = PayloadType.execution
        #expect(throws: VerificationError.self) { try vk.verify(tamperedType) }
        var tamperedSig = statement
        tamperedSig.signature[tamperedSig.signature.count - 1] ^= 1
        #expect(throws: VerificationError.self) { try vk.verify(tamperedSig) }
    }

    @Test func hexRoundTrip() {
        let bytes: [UInt8] = [0, 1, 0xab, 0xff]
        #expect(Hex.encode(bytes) == "0001abff")
        #expect(Hex.decode("0001ABff") == bytes)
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
    }

    @Test func garbageKeyIsRefused() {
        #expect(throws: VerificationError.self) { try VerificationKey(spkiDER: [0x30, 0x03, 0x02, 0x01, 0x00]) }
    }
}
