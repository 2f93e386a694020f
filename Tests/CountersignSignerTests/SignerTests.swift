import CountersignTestSupport
import CPKCS11
import Crypto
import _CryptoExtras
import CountersignConfig
import CountersignVerify
import CountersignWire
import Foundation
import Logging
import Testing
@testable import CountersignSigner

/// Everything that touches the SoftHSM test tokens runs serially: recovery re-initialises the
/// process's PKCS#11 module, which would pull the sessions from under a test running beside it.
/// For the same reason the suite runs only in a process of its own
/// (``TestEnvironment/runsTokenBreakingSuites``; scripts/test runs it so).
@Suite(.serialized, .enabled(if: TestEnvironment.runsTokenBreakingSuites,
                             "breaks SoftHSM tokens: run alone with COUNTERSIGN_TEST_TOKEN_BREAKING=1 swift test --filter TokenTests (make test does)"))
struct TokenTests {
    let tokens = TestTokens.shared

    // MARK: signing

    @Test(arguments: [KeyAlgorithm.ecdsaP256, .rsaPSS4096])
    func signsAndVerifiesAndTamperingFails(algorithm: KeyAlgorithm) async throws {
        let signer = try tokens.signer("cs-test-sign")
        defer { signer.shutdown() }
        #expect(signer.availability == .available)
        let key = try await signer.generateKey(algorithm: algorithm)
        try signer.setActiveKey(key.keyID)
        #expect(try await signer.activeKeyID == key.keyID)
        #expect(key.keyID == KeyID.of(spkiDER: key.spkiDER))

        let payload = Array("a decision statement".utf8)
        let statement = try await signer.sign(payloadType: PayloadType.decision, payload: payload)
        #expect(statement.keyID == key.keyID)
        let vk = try VerificationKey(spkiDER: key.spkiDER)
        #expect(vk.algorithm == (algorithm == .ecdsaP256 ? .ecdsaP256 : .rsaPSS))
        try vk.verify(statement)

        for i in [0, payload.count / 2, payload.count - 1] {
            var tampered = statement
            tampered.payload[i] ^= 0x01
            #expect(throws: VerificationError.self) { try vk.verify(tampered) }
        }
        for i in [0, statement.signature.count / 2, statement.signature.count - 1] {
            var tampered = statement
            tampered.signature[i] ^= 0x01
            #expect(throws: VerificationError.self) { try vk.verify(tampered) }
        }
        // The PEM export holds the same SPKI.
        #expect(key.pem.hasPrefix("-----BEGIN PUBLIC KEY-----\n"))
    }

    @Test func privateKeyValueCannotBeRead() async throws {
        let signer = try tokens.signer("cs-test-sign")
        defer { signer.shutdown() }
        let key = try await signer.generateKey(algorithm: .ecdsaP256)
        let value = try await signer.readAttribute(keyID: key.keyID, of: .privateKey, type: CK_ATTRIBUTE_TYPE(CKA_VALUE))
        guard case .failure(let error) = value else {
            Issue.record("CKA_VALUE of a private key was readable")
            return
        }
        #expect(error.returnValue == UInt(CKR_ATTRIBUTE_SENSITIVE))
        #expect(error.returnValueName == "CKR_ATTRIBUTE_SENSITIVE")
        let extractable = try await signer.readAttribute(keyID: key.keyID, of: .privateKey, type: CK_ATTRIBUTE_TYPE(CKA_EXTRACTABLE))
        #expect(try extractable.get() == [0])
        let sensitive = try await signer.readAttribute(keyID: key.keyID, of: .privateKey, type: CK_ATTRIBUTE_TYPE(CKA_SENSITIVE))
        #expect(try sensitive.get() == [1])
    }

    /// The signer signs with a copy of the key that it makes in the token as a session object (a
    /// token object costs SoftHSM a check of its file on every signature). The copy is as guarded
    /// as the key: sensitive, not extractable, private; it is not stored in the token; its
    /// signatures verify with the key's public key; and a signer that finds the key at start-up
    /// makes one too.
    @Test func itSignsWithASessionCopyOfTheKeyThatIsAsGuardedAsTheKey() async throws {
        let first = try tokens.signer("cs-test-sign")
        let key = try await first.generateKey(algorithm: .ecdsaP256)
        first.shutdown()
        let signer = try tokens.signer("cs-test-sign")
        defer { signer.shutdown() }
        #expect(await signer.waitUntilAvailable(timeoutSeconds: 10).isAvailable)
        let generated = try await signer.generateKey(algorithm: .ecdsaP256)
        for k in [key, generated] {
            func attribute(_ object: TokenSigner.KeyObject, _ type: UInt) async throws -> Result<[UInt8], SignerError> {
                try await signer.readAttribute(keyID: k.keyID, of: object, type: CK_ATTRIBUTE_TYPE(type))
            }
            #expect(try await attribute(.privateKey, CKA_TOKEN).get() == [1])
            #expect(try await attribute(.signing, CKA_TOKEN).get() == [0], "signing with the token object, not a session copy")
            #expect(try await attribute(.signing, CKA_SENSITIVE).get() == [1])
            #expect(try await attribute(.signing, CKA_EXTRACTABLE).get() == [0])
            #expect(try await attribute(.signing, CKA_PRIVATE).get() == [1])
            #expect(try await attribute(.signing, CKA_ID).get() == (try await attribute(.privateKey, CKA_ID).get()))
            guard case .failure(let error) = try await attribute(.signing, CKA_VALUE) else {
                Issue.record("CKA_VALUE of the signing copy was readable")
                continue
            }
            #expect(error.returnValueName == "CKR_ATTRIBUTE_SENSITIVE")
            let statement = try await signer.sign(payloadType: "application/test", payload: Array("copy".utf8), keyID: k.keyID)
            try TrustedKeys([try VerificationKey(spkiDER: k.spkiDER)]).verify(statement)
        }
    }

    /// The module is only ever called through the exit gate's function list (`CPKCS11/gate.c`):
    /// loading it again hands back the same list, the list names itself, and a function the
    /// product does not call is refused rather than let past the gate. (That the process exits
    /// cleanly while signatures are under way is `scripts/integration/signer-exit.sh`.)
    @Test func theModuleIsCalledThroughTheExitGate() throws {
        let signer = try tokens.signer("cs-test-sign")
        defer { signer.shutdown() }
        let module = try PKCS11Module.shared(path: tokens.settings("cs-test-sign").modulePath, softHSM2Conf: nil)
        let gated = module.functions
        var handle: UnsafeMutableRawPointer?
        var again: CK_FUNCTION_LIST_PTR?
        var error = [CChar](repeating: 0, count: 256)
        #expect(cs_p11_load(module.path, &handle, &again, &error, UInt(error.count)) == CKR_OK)
        #expect(again == gated)
        cs_p11_unload(handle)
        var listed: CK_FUNCTION_LIST_PTR?
        #expect(gated.pointee.C_GetFunctionList(&listed) == CKR_OK)
        #expect(listed == gated)
        #expect(gated.pointee.C_Encrypt(0, nil, 0, nil, nil) == CKR_FUNCTION_NOT_SUPPORTED)
        #expect(gated.pointee.C_DigestInit(0, nil) == CKR_FUNCTION_NOT_SUPPORTED)
        // The gated calls still reach the token.
        var info = CK_INFO()
        #expect(gated.pointee.C_GetInfo(&info) == CKR_OK)
    }

    @Test func signsConcurrentlyAndFindsItsKeysAgain() async throws {
        let first = try tokens.signer("cs-test-sign", sessions: 2)
        let key = try await first.generateKey(algorithm: .ecdsaP256)
        first.shutdown()
        // A new signer finds the key in the token by itself.
        let signer = try tokens.signer("cs-test-sign", sessions: 2)
        defer { signer.shutdown() }
        #expect(signer.tokenKeys.contains(key))
        try signer.setActiveKey(key.keyID)
        let vk = try VerificationKey(spkiDER: key.spkiDER)
        try await withThrowingTaskGroup(of: SignedStatement.self) { group in
            for i in 0..<200 {
                group.addTask { try await signer.sign(payloadType: PayloadType.decision, payload: Array("statement \(i)".utf8)) }
            }
            for try await s in group { try vk.verify(s) }
        }
    }

    @Test func signaturesRunOnTheCallersThreadOnlyWhileTheTokenIsFast() async throws {
        let key = try await {
            let s = try tokens.signer("cs-test-sign")
            defer { s.shutdown() }
            return try await s.generateKey(algorithm: .ecdsaP256)
        }()
        let vk = try VerificationKey(spkiDER: key.spkiDER)
        // A limit no SoftHSM signature comes near (a loaded test machine must not make this flaky)
        // with a session per core; a limit of 0 (a token never fast enough); and fewer sessions
        // than cores, where signing threads keep the sessions busy.
        let cores = ProcessInfo.processInfo.activeProcessorCount
        var cases = [(sessions: cores, limit: 0.05, onCallers: true), (sessions: cores, limit: 0, onCallers: false)]
        if cores > 1 { cases.append((sessions: cores - 1, limit: 0.05, onCallers: false)) }
        for c in cases {
            var options = TestTokens.options
            options.callerThreadLimitSeconds = c.limit
            let signer = try tokens.signer("cs-test-sign", sessions: c.sessions, options: options)
            defer { signer.shutdown() }
            try signer.setActiveKey(key.keyID)
            // The first signature measures the token, on a signing thread.
            try vk.verify(try await signer.sign(payloadType: PayloadType.decision, payload: [0]))
            #expect(signer.signaturesOnCallersThreads == 0)
            try await withThrowingTaskGroup(of: SignedStatement.self) { group in
                for i in 0..<100 {
                    group.addTask { try await signer.sign(payloadType: PayloadType.decision, payload: Array("statement \(i)".utf8)) }
                }
                for try await s in group { try vk.verify(s) }
            }
            if c.onCallers {
                #expect(signer.signaturesOnCallersThreads > 50, "\(c)")
            } else {
                #expect(signer.signaturesOnCallersThreads == 0, "\(c)")
            }
        }
    }

    @Test func refusesUnknownKeysAndSignsNothingWithoutAnActiveKey() async throws {
        let signer = try tokens.signer("cs-test-sign")
        defer { signer.shutdown() }
        await #expect(throws: SignerError.self) { try await signer.sign(payloadType: PayloadType.decision, payload: [1]) }
        #expect(throws: SignerError.self) { try signer.setActiveKey(String(repeating: "0", count: 64)) }
        #expect(signer.availability == .available)
    }

    // MARK: fail secure

    @Test func removingTheTokenMakesSigningUnavailableAndRestoringItBringsItBack() async throws {
        let label = "cs-test-failsecure"
        let signer = try tokens.signer(label)
        defer { signer.shutdown() }
        let key = try await signer.generateKey(algorithm: .ecdsaP256)
        try signer.setActiveKey(key.keyID)
        _ = try await signer.sign(payloadType: PayloadType.decision, payload: [1, 2, 3])

        let folder = tokens.folderPath(label)
        let aside = tokens.root + "/aside-" + UUID().uuidString
        try FileManager.default.moveItem(atPath: folder, toPath: aside)
        // The signer signs with a session copy of the key, which SoftHSM keeps in memory (an HSM's
        // session objects go with it): the probe finds the token gone within its interval (0.2 s
        // here), and from then on nothing is signed.
        let removed = ContinuousClock.now
        let down = await waitFor(signer) { !$0.isAvailable }
        guard case .unavailable(let reason) = down else { Issue.record("still available"); return }
        #expect(ContinuousClock.now - removed < .seconds(2))
        #expect(reason.returnValueName != nil)
        let error = await #expect(throws: SignerError.self) {
            try await signer.sign(payloadType: PayloadType.decision, payload: [4, 5, 6])
        }
        #expect(error?.code == .unavailable)
        #expect(error?.returnValueName?.hasPrefix("CKR_") == true)
        try await Task.sleep(nanoseconds: 500_000_000)  // several failed reconnections
        #expect(!signer.availability.isAvailable)
        await #expect(throws: SignerError.self) { try await signer.sign(payloadType: PayloadType.decision, payload: [7]) }

        try FileManager.default.moveItem(atPath: aside, toPath: folder)
        let up = await signer.waitUntilAvailable(timeoutSeconds: 10)
        #expect(up == .available)
        let s = try await signer.sign(payloadType: PayloadType.decision, payload: [8])
        try VerificationKey(spkiDER: key.spkiDER).verify(s)
    }

    /// A key destroyed in the token by someone else stops signing here within the probe interval,
    /// although the signer's session copy of it would sign on; after the reconnection the signer
    /// no longer knows the key, and other keys sign again.
    @Test func aKeyDestroyedInTheTokenStopsSigningAlthoughItsCopyLives() async throws {
        let label = "cs-test-failsecure"
        let signer = try tokens.signer(label)
        defer { signer.shutdown() }
        let doomed = try await signer.generateKey(algorithm: .ecdsaP256)
        let other = try await signer.generateKey(algorithm: .ecdsaP256)
        _ = try await signer.sign(payloadType: PayloadType.decision, payload: [1], keyID: doomed.keyID)
        // The signer goes down and reconnects within milliseconds: its updates show the way.
        let updates = signer.availabilityUpdates()
        let wentDown = Task {
            for await a in updates { if case .unavailable(let e) = a { return Optional(e) } }
            return nil
        }
        try await signer.destroyTokenObject(keyID: doomed.keyID)
        #expect(try await signer.readAttribute(keyID: doomed.keyID, of: .signing, type: CK_ATTRIBUTE_TYPE(CKA_ID)).get() != [],
                "the copy is still there: without the probe, it would sign on")
        let destroyed = ContinuousClock.now
        let timeout = Task { try await Task.sleep(for: .seconds(5)); wentDown.cancel() }
        let reason = await wentDown.value
        timeout.cancel()
        #expect(ContinuousClock.now - destroyed < .seconds(2))
        #expect(reason?.message.contains("the token object of key \(doomed.keyID) no longer answers") == true, "\(String(describing: reason))")
        #expect(await signer.waitUntilAvailable(timeoutSeconds: 10) == .available)
        let refused = await #expect(throws: SignerError.self) {
            try await signer.sign(payloadType: PayloadType.decision, payload: [2], keyID: doomed.keyID)
        }
        #expect(refused?.code == .unknownKey)
        #expect(!signer.tokenKeys.contains { $0.keyID == doomed.keyID })
        let s = try await signer.sign(payloadType: PayloadType.decision, payload: [3], keyID: other.keyID)
        try VerificationKey(spkiDER: other.spkiDER).verify(s)
    }

    @Test func aChangedPINMakesSigningUnavailableUntilThePINSourceIsUpdated() async throws {
        let label = "cs-test-pin"
        let pinFile = try #require(tokens.pinFiles[label])
        let oldPIN = try String(contentsOfFile: pinFile, encoding: .utf8)
        let signer = try tokens.signer(label)
        defer { signer.shutdown() }
        let key = try await signer.generateKey(algorithm: .ecdsaP256)
        try signer.setActiveKey(key.keyID)

        // An operator changes the token's PIN; then the HSM drops the sessions (a restart).
        let newPIN = "changed-\(UUID().uuidString.prefix(8))"
        try await signer.changeUserPIN(old: oldPIN, new: newPIN)
        signer.closeSessionsBehindTheSignersBack()
        await #expect(throws: SignerError.self) { try await signer.sign(payloadType: PayloadType.decision, payload: [1]) }
        let down = await waitFor(signer) {
            if case .unavailable(let e) = $0 { return e.returnValueName == "CKR_PIN_INCORRECT" }
            return false
        }
        guard case .unavailable(let reason) = down else { Issue.record("still available"); return }
        #expect(reason.returnValueName == "CKR_PIN_INCORRECT")
        #expect(!reason.debugDescription.contains(oldPIN))
        await #expect(throws: SignerError.self) { try await signer.sign(payloadType: PayloadType.decision, payload: [2]) }

        // The PIN file gets the new PIN: the signer logs in again by itself.
        try newPIN.write(toFile: pinFile, atomically: true, encoding: .utf8)
        let up = await signer.waitUntilAvailable(timeoutSeconds: 10)
        #expect(up == .available)
        let s = try await signer.sign(payloadType: PayloadType.decision, payload: [3])
        try VerificationKey(spkiDER: key.spkiDER).verify(s)
    }

    @Test func aTokenThatIsNotThereAtStartIsReportedNotFatal() async throws {
        var settings = tokens.settings("cs-test-sign")
        settings.tokenLabel = "no-such-token"
        let signer = try TokenSigner(settings: settings, options: TestTokens.options, logger: Logger(label: "test"))
        defer { signer.shutdown() }
        guard case .unavailable(let reason) = signer.availability else { Issue.record("available without a token"); return }
        #expect(reason.code == .unavailable)
        #expect(reason.returnValueName == "CKR_TOKEN_NOT_PRESENT")
        await #expect(throws: SignerError.self) { try await signer.sign(payloadType: PayloadType.decision, payload: [1]) }
    }

    private func waitFor(_ signer: TokenSigner, seconds: Double = 10,
                         _ condition: (SignerAvailability) -> Bool) async -> SignerAvailability {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let a = signer.availability
            if condition(a) { return a }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        return signer.availability
    }
}

/// Pure parts of the signer, no token.
@Suite struct EncodingTests {
    @Test func handWrittenECDSADERMatchesSwiftCrypto() throws {
        var cases: [[UInt8]] = [
            [UInt8](repeating: 0, count: 31) + [1] + [UInt8](repeating: 0xFF, count: 32),  // tiny r, high-bit s
            [UInt8](repeating: 0x80, count: 64),
            [0, 0, 0x7F] + [UInt8](repeating: 0x11, count: 61),
        ]
        for _ in 0..<200 { cases.append((0..<64).map { _ in UInt8.random(in: 0...255) }) }
        for raw in cases {
            let ours = try PublicKeyEncoding.ecdsaDER(raw: raw)
            let theirs = try P256.Signing.ECDSASignature(rawRepresentation: raw).derRepresentation
            #expect(ours == Array(theirs))
        }
        #expect(throws: SignerError.self) { _ = try PublicKeyEncoding.ecdsaDER(raw: [1, 2, 3]) }
    }

    @Test func rsaSPKIIsReadBySwiftCrypto() throws {
        let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let der = Array(key.publicKey.derRepresentation)
        // SPKI of a 2048-bit key: 24 bytes of headers, then the PKCS#1 RSAPublicKey.
        try #require(der.count == 294 && der[24] == 0x30)
        let pkcs1 = Array(der[24...])
        // Pull n and e out of the PKCS#1 RSAPublicKey and rebuild the SPKI the way the signer does.
        func read(_ bytes: [UInt8], _ i: inout Int) -> [UInt8] {
            precondition(bytes[i] == 0x02); i += 1
            var len = Int(bytes[i]); i += 1
            if len & 0x80 != 0 {
                let n = len & 0x7F; len = 0
                for _ in 0..<n { len = len << 8 | Int(bytes[i]); i += 1 }
            }
            defer { i += len }
            return Array(bytes[i..<(i + len)])
        }
        var i = 4  // SEQUENCE, 0x82, two length bytes
        let n = read(pkcs1, &i)
        let e = read(pkcs1, &i)
        #expect(PublicKeyEncoding.rsaSPKI(modulus: n, exponent: e) == der)
        #expect(PublicKeyEncoding.pem(spkiDER: der).contains("BEGIN PUBLIC KEY"))
    }

    @Test func errorsNameTheReturnValueAndKnowTheirWireStatus() {
        let e = SignerError.pkcs11(UInt(CKR_DEVICE_REMOVED), "C_Sign")
        #expect(e.code == .unavailable)
        #expect(e.grpcStatusCode == 14)
        #expect(e.description.contains("CKR_DEVICE_REMOVED"))
        #expect(e.debugDescription.contains("0x32"))
        #expect(CKR.name(0xA0) == "CKR_PIN_INCORRECT")
        #expect(CKR.name(0x7FFF_FFFF) == "CKR_0x7fffffff")
    }

    /// An error names its return value for every value the PKCS#11 header defines (the table was
    /// once made from the hexadecimal defines only, and CKR_GENERAL_ERROR showed as CKR_0x5).
    @Test func everyReturnValueOfTheHeaderHasItsName() throws {
        let header = try String(contentsOfFile: "/usr/include/p11-kit-1/p11-kit/pkcs11.h", encoding: .utf8)
        var defined = 0
        for line in header.split(separator: "\n") where line.hasPrefix("#define CKR_") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 3, fields[2].hasPrefix("("), fields[2].hasSuffix("UL)") else { continue }  // CKR_VENDOR_DEFINED
            let literal = fields[2].dropFirst().dropLast(3)
            let value = literal.hasPrefix("0x") ? UInt(literal.dropFirst(2), radix: 16) : UInt(literal)
            let rv = try #require(value, "\(line)")
            #expect(CKR.name(rv) == String(fields[1]), "\(line)")
            defined += 1
        }
        #expect(defined >= 90, "only \(defined) CKR_ defines read from the header")
        #expect(CKR.name(UInt(CKR_GENERAL_ERROR)) == "CKR_GENERAL_ERROR")
    }
}

@Suite struct ModuleConfigurationTests {
    /// SoftHSM itself would answer CKR_GENERAL_ERROR from C_Initialize, naming nothing.
    @Test func aSoftHSMConfigurationThatCannotBeReadIsNamed() {
        let missing = "/nonexistent/countersign-test/softhsm2.conf"
        #expect {
            _ = try PKCS11Module.shared(path: "/usr/lib/softhsm/libsofthsm2.so", softHSM2Conf: missing)
        } throws: { error in
            guard let e = error as? SignerError else { return false }
            return e.code == .unavailable && e.description.contains(missing) && e.description.contains("token.softhsm2_conf")
        }
    }
}
