import CPKCS11
public import CountersignConfig
public import CountersignVerify
import Crypto
import Foundation
public import Logging

/// A key pair held by the token. The private half never leaves it.
public struct TokenKey: Sendable, Hashable {
    /// Lowercase hex SHA-256 of ``spkiDER``.
    public let keyID: String
    /// DER SubjectPublicKeyInfo read back from the token.
    public let spkiDER: [UInt8]
    public let algorithm: KeyAlgorithm
    /// `CKA_LABEL` of both halves in the token.
    public let label: String
    /// `CKA_ID` of both halves in the token.
    let ckaID: [UInt8]

    /// The public key as PEM (`-----BEGIN PUBLIC KEY-----`).
    public var pem: String { PublicKeyEncoding.pem(spkiDER: spkiDER) }
}

/// Whether the signer can sign now.
public enum SignerAvailability: Sendable, Hashable, CustomStringConvertible {
    /// Logged in, sessions open, signing.
    case available
    /// Not signing; the error says why (it names the `CKR_` value when the token gave one). The
    /// signer keeps trying to recover with backoff.
    case unavailable(SignerError)

    public var isAvailable: Bool { if case .available = self { true } else { false } }

    public var description: String {
        switch self {
        case .available: "available"
        case .unavailable(let e): "unavailable: \(e.message)"
        }
    }
}

/// Tuning of the signer. Defaults: first retry after 0.1 s, doubling up to 5 s; the token and its
/// keys' token objects are probed every second; signatures run on the caller's thread while they
/// take less than 300 µs.
public struct SignerOptions: Sendable, Hashable {
    /// Delay before the first reconnection attempt, in seconds. Default 0.1.
    public var initialBackoffSeconds: Double
    /// Longest delay between reconnection attempts, in seconds. Default 5.
    public var maximumBackoffSeconds: Double
    /// How often a healthy signer checks that its token is still there (`C_GetTokenInfo`) and so is
    /// each key's token object (it signs with session copies, which would outlive them), in
    /// seconds. Default 1.
    public var probeIntervalSeconds: Double
    /// Longest recent signature time (moving average) for which a signature runs on the caller's
    /// thread rather than a signing thread, in seconds; 0 never does. Default 0.0003.
    ///
    /// An in-process module such as SoftHSM signs in tens of microseconds, CPU work like a hash,
    /// and handing that to a signing thread and back costs two thread wake-ups, a large share of
    /// it. A network HSM takes milliseconds: its calls stay on the signing threads, so a slow
    /// token never holds a thread of Swift's concurrency pool.
    public var callerThreadLimitSeconds: Double

    public init(initialBackoffSeconds: Double = 0.1, maximumBackoffSeconds: Double = 5, probeIntervalSeconds: Double = 1,
                callerThreadLimitSeconds: Double = 0.0003) {
        self.initialBackoffSeconds = initialBackoffSeconds
        self.maximumBackoffSeconds = maximumBackoffSeconds
        self.probeIntervalSeconds = probeIntervalSeconds
        self.callerThreadLimitSeconds = callerThreadLimitSeconds
    }

    public static let defaults = SignerOptions()
}

/// Signs statements with keys held in a PKCS#11 token.
///
/// Token work runs on a pool of logged-in sessions (`TokenSettings.sessions`), each used by one
/// thread at a time: ``sign(payloadType:payload:)`` computes SHA-256 of the DSSE PAE, signs the
/// digest on a free session (`CKM_ECDSA`, or `CKM_RSA_PKCS_PSS` with SHA-256, MGF1-SHA-256 and a
/// 32-byte salt) and converts ECDSA's raw r‖s to DER. Key generation and other administration
/// always run on the signer's own threads (one per session). So does a signature while the token
/// is slow (a network HSM); while it signs as fast as CPU work (an in-process module) a signature
/// runs on the caller's thread when a session is free (``SignerOptions/callerThreadLimitSeconds``).
///
/// Fail secure: any failure of the token (missing, wrong PIN, lost session, a failing `C_Sign`)
/// makes the signer ``SignerAvailability/unavailable(_:)``: every signing call throws a
/// ``SignerError`` with code ``SignerError/Code/unavailable`` that names the `CKR_` value, and a
/// supervisor thread re-initialises the module with exponential backoff until the token answers
/// again, logging each step. After `CKR_PIN_INCORRECT` the same PIN is never tried again (a real
/// HSM would lock the token): the signer waits until the PIN source yields a different one.
///
/// - Important: One SoftHSM configuration and one PKCS#11 initialisation per process; recovery
///   re-initialises the module (`C_Finalize`, `C_Initialize`). Do not fork after creating a signer.
public final class TokenSigner: StatementSigner, @unchecked Sendable {
    private enum State {
        case connecting
        case available
        case unavailable(SignerError)
    }

    private struct KeyHandles {
        var key: TokenKey
        var privateHandle: CK_OBJECT_HANDLE
        var publicHandle: CK_OBJECT_HANDLE
        /// What signs: a session copy of the private key (``signingCopy(calls:session:of:)``), or
        /// the private key itself when the token does not copy it.
        var signingHandle: CK_OBJECT_HANDLE
    }

    /// The object to sign with for the token key `privateHandle`: a copy of it as a session object,
    /// made once per connection, when the token allows it (SoftHSM does; an HSM may refuse, with a
    /// key whose `CKA_COPYABLE` is false), else the key itself.
    ///
    /// The copy is made and kept inside the token, non-extractable and sensitive like the key, and
    /// ends with the signer's sessions. It is there for speed: SoftHSM checks a token object's file
    /// on every `C_SignInit` (a lock and a read of the file's generation), and not a session
    /// object's: 39 µs of CPU per P-256 signature instead of 55 on this machine.
    private static func signingCopy(calls: PKCS11Calls, session: CK_SESSION_HANDLE, of privateHandle: CK_OBJECT_HANDLE,
                                    logger: Logger) -> CK_OBJECT_HANDLE {
        switch calls.sessionCopy(session: session, of: privateHandle) {
        case .success(let copy):
            return copy
        case .failure(let error):
            logger.notice("the token does not copy the key into a session object; signing with the token object",
                          metadata: ["cs.reason": "\(error.message)"])
            return privateHandle
        }
    }

    /// A unit of token work. `run` does the PKCS#11 calls and returns the failure that should take
    /// the signer down (if any) and the completion that resumes the caller, which the signing
    /// thread may hold back briefly to resume several callers at once (see `workerLoop`).
    private final class Job {
        let run: (CK_SESSION_HANDLE, [String: KeyHandles]) -> (failure: SignerError?, complete: () -> Void)
        let fail: (SignerError) -> Void
        /// A signature: its duration feeds ``TokenSigner/signNanos``.
        let isSignature: Bool
        init(isSignature: Bool, run: @escaping (CK_SESSION_HANDLE, [String: KeyHandles]) -> (failure: SignerError?, complete: () -> Void),
             fail: @escaping (SignerError) -> Void) {
            self.isSignature = isSignature
            self.run = run
            self.fail = fail
        }
    }

    public let settings: TokenSettings
    public let options: SignerOptions
    private let module: PKCS11Module
    private let calls: PKCS11Calls
    private let logger: Logger

    // Everything below is guarded by `cond`.
    private let cond = Monitor()
    private var state: State = .connecting
    private var queue: [Job] = []
    private var queueHead = 0
    private var sessions: [CK_SESSION_HANDLE] = []
    /// A session of the supervisor's own, for its probe (the pool's may all be busy signing).
    private var probeSession: CK_SESSION_HANDLE?
    /// The sessions no thread is using now (a PKCS#11 session serves one call at a time).
    private var freeSessions: [CK_SESSION_HANDLE] = []
    /// Recent time of one signature in the token (moving average, nanoseconds); infinite until
    /// measured. Below ``SignerOptions/callerThreadLimitSeconds`` signatures run on the caller's thread.
    private var signNanos = Double.infinity
    /// Whether callers may sign on their own thread at all: only with at least one session per core.
    /// With fewer sessions, a signing thread per session keeps every session busy while the callers'
    /// own work (the PAE, the hash, the rest of the request) runs on the other cores; with a session
    /// per core, handing signatures to other threads only adds thread switches. (Measured on 2
    /// cores: 1 session 0.93 of the raw rate on a signing thread, 0.79 on callers' threads; 2
    /// sessions 0.81 on signing threads, 0.96 on callers' threads.)
    private let callersMaySign: Bool
    /// Callers waiting for a session to sign on their own thread.
    private var sessionWaiters = 0
    /// Signatures that ran on a caller's thread.
    private var callerThreadSignatures = 0
    private var slot: CK_SLOT_ID = 0
    private var keys: [String: KeyHandles] = [:]
    private var activeKey: String?
    private var inFlight = 0
    private var moduleGeneration = 0
    private var connectedOnce = false
    private var refusedPINDigest: [UInt8]?
    private var shuttingDown = false
    private var runningThreads = 0
    private var observers: [UUID: AsyncStream<SignerAvailability>.Continuation] = [:]

    /// Loads the module, logs in and opens the session pool.
    ///
    /// A token problem does not throw: the signer starts ``SignerAvailability/unavailable(_:)`` and
    /// keeps trying to connect. Read ``availability`` (or await ``waitUntilAvailable(timeoutSeconds:)``).
    /// - Parameters:
    ///   - settings: `module`, `softhsm2_conf`, `token_label`, the PIN source and `sessions` are used
    ///     here; ``KeyCustodian`` uses the rotation settings.
    ///   - options: recovery tuning, ``SignerOptions/defaults`` unless given.
    ///   - logger: where availability changes go (never the PIN).
    /// - Throws: ``SignerError`` only when the module itself cannot be loaded (a configuration error).
    public init(settings: TokenSettings, options: SignerOptions = .defaults, logger: Logger) throws {
        self.settings = settings
        self.options = options
        self.logger = logger
        self.module = try PKCS11Module.shared(path: settings.modulePath, softHSM2Conf: settings.softHSM2ConfPath)
        self.calls = PKCS11Calls(f: module.functions)
        self.callersMaySign = max(1, settings.sessions) >= ProcessInfo.processInfo.activeProcessorCount

        do {
            try connect()
        } catch let error as SignerError {
            cond.lock()
            state = .unavailable(error)
            cond.unlock()
            logger.error("signer unavailable", metadata: ["cs.reason": "\(error.message)", "cs.token": "\(settings.tokenLabel)"])
        }
        let workers = max(1, settings.sessions)
        cond.lock()
        runningThreads = workers + 1
        cond.unlock()
        for index in 0..<workers {
            let t = Thread { [self] in workerLoop() }
            t.name = "countersign-signer-\(index)"
            t.start()
        }
        let s = Thread { [self] in supervisorLoop() }
        s.name = "countersign-signer-supervisor"
        s.start()
    }

    deinit {}

    // MARK: public API

    /// The signer's state now.
    public var availability: SignerAvailability {
        cond.lock()
        defer { cond.unlock() }
        return availabilityLocked
    }

    private var availabilityLocked: SignerAvailability {
        switch state {
        case .available: .available
        case .connecting: .unavailable(SignerError(.unavailable, "token unavailable: connecting"))
        case .unavailable(let e): .unavailable(e)
        }
    }

    /// Every change of ``availability``, starting with the current state.
    public func availabilityUpdates() -> AsyncStream<SignerAvailability> {
        let (stream, continuation) = AsyncStream<SignerAvailability>.makeStream(bufferingPolicy: .bufferingNewest(8))
        let id = UUID()
        cond.lock()
        observers[id] = continuation
        continuation.yield(availabilityLocked)
        cond.unlock()
        continuation.onTermination = { [weak self] _ in
            guard let self else { return }
            self.cond.lock()
            self.observers[id] = nil
            self.cond.unlock()
        }
        return stream
    }

    /// Waits until the signer is available, for at most `timeoutSeconds`.
    /// - Returns: the availability at the end.
    public func waitUntilAvailable(timeoutSeconds: Double) async -> SignerAvailability {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while true {
            let a = availability
            if a.isAvailable || Date() >= deadline { return a }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
    }

    /// Key id of the key that ``sign(payloadType:payload:)`` uses.
    /// - Throws: ``SignerError/Code/noActiveKey`` before ``setActiveKey(_:)``.
    public var activeKeyID: String {
        get async throws {
            cond.lock()
            defer { cond.unlock() }
            guard let activeKey else { throw SignerError(.noActiveKey, "no active signing key; run the key ceremony") }
            return activeKey
        }
    }

    /// Whether a key has been made active (the keyring is loaded); without one nothing is signed.
    public var hasActiveKey: Bool {
        cond.lock()
        defer { cond.unlock() }
        return activeKey != nil
    }

    /// Makes `keyID` the key that signs. ``KeyCustodian`` calls this; nobody else should.
    /// - Throws: ``SignerError/Code/unknownKey`` when the token is connected and holds no such key.
    public func setActiveKey(_ keyID: String) throws {
        cond.lock()
        defer { cond.unlock() }
        if case .available = state, keys[keyID] == nil {
            throw SignerError(.unknownKey, "the token holds no key \(keyID)")
        }
        activeKey = keyID
    }

    /// The key pairs found in the token (those with a `CKA_ID`), as of the last connection.
    public var tokenKeys: [TokenKey] {
        cond.lock()
        defer { cond.unlock() }
        return keys.values.map(\.key).sorted { $0.label < $1.label }
    }

    /// Signs `PAE(payloadType, payload)` with the active key.
    /// - Throws: ``SignerError``: `unavailable` (naming the `CKR_` value) or `noActiveKey`.
    public func sign(payloadType: String, payload: [UInt8]) async throws -> SignedStatement {
        try await sign(payloadType: payloadType, payload: payload, keyID: try await activeKeyID)
    }

    /// Signs `PAE(payloadType, payload)` with the token key `keyID` (used for the new key's half of
    /// a transition).
    /// - Throws: ``SignerError``: `unavailable` or `unknownKey`.
    public func sign(payloadType: String, payload: [UInt8], keyID: String) async throws -> SignedStatement {
        let digest = Array(SHA256.hash(data: DSSE.pae(payloadType: payloadType, payload: payload)))
        let calls = self.calls
        let (raw, algorithm): ([UInt8], KeyAlgorithm) = try await submit(signature: true) { session, keys in
            guard let k = keys[keyID] else {
                return .failure(SignerError(.unknownKey, "the token holds no key \(keyID)"))
            }
            return calls.sign(session: session, key: k.signingHandle, rsa: k.key.algorithm == .rsaPSS4096, digest: digest)
                .map { ($0, k.key.algorithm) }
        }
        let signature = algorithm == .ecdsaP256 ? try PublicKeyEncoding.ecdsaDER(raw: raw) : raw
        return SignedStatement(payloadType: payloadType, payload: payload, signature: signature, keyID: keyID)
    }

    /// Generates a key pair in the token: `CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE` true,
    /// `CKA_EXTRACTABLE` false. RSA-4096 takes seconds.
    /// - Returns: the new key (not yet active).
    /// - Throws: ``SignerError``.
    public func generateKey(algorithm: KeyAlgorithm, label: String? = nil) async throws -> TokenKey {
        var id = [UInt8](repeating: 0, count: 16)
        for i in id.indices { id[i] = UInt8.random(in: 0...255) }
        let ckaID = id
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        let label = label ?? "countersign-\(stamp)-\(Hex.encode(ckaID.prefix(4)))"
        let calls = self.calls
        let logger = self.logger
        let handles: KeyHandles = try await submit { session, _ in
            do {
                let (pub, priv) = try calls.generate(session: session, rsaBits: algorithm == .rsaPSS4096 ? 4096 : nil,
                                                     label: label, id: ckaID)
                let spki = try Self.readSPKI(calls: calls, session: session, publicHandle: pub, algorithm: algorithm)
                let key = TokenKey(keyID: KeyID.of(spkiDER: spki), spkiDER: spki, algorithm: algorithm, label: label, ckaID: ckaID)
                let signing = Self.signingCopy(calls: calls, session: session, of: priv, logger: logger)
                return .success(KeyHandles(key: key, privateHandle: priv, publicHandle: pub, signingHandle: signing))
            } catch let e as SignerError {
                return .failure(e)
            } catch {
                return .failure(SignerError(.keyGeneration, "cannot read the new public key", cause: error))
            }
        }
        cond.lock()
        keys[handles.key.keyID] = handles
        cond.unlock()
        logger.notice("generated key in the token", metadata: ["cs.key_id": "\(handles.key.keyID)", "cs.algorithm": "\(algorithm.rawValue)"])
        return handles.key
    }

    /// Stops the worker threads and closes the sessions. Jobs still queued fail as unavailable.
    /// Call it once the server has drained: the threads keep the signer alive until then. The
    /// module stays initialised (it is shared by the process); the process exit finalises it.
    public func shutdown() {
        cond.lock()
        shuttingDown = true
        cond.broadcastSession()
        let error = SignerError(.unavailable, "token unavailable: the signer is shutting down")
        let pending = drainLocked()
        let open = sessions + (probeSession.map { [$0] } ?? [])
        sessions = []
        freeSessions = []
        probeSession = nil
        cond.broadcastWork()
        cond.broadcastControl()
        while runningThreads > 0 || inFlight > 0 { cond.waitControl() }
        for o in observers.values { o.finish() }
        observers = [:]
        state = .unavailable(error)
        cond.unlock()
        for job in pending { job.fail(error) }
        for s in open { _ = module.functions.pointee.C_CloseSession(s) }
    }

    // MARK: test and benchmark hooks

    /// How many signatures ran on a caller's thread rather than a signing thread.
    var signaturesOnCallersThreads: Int {
        cond.lock()
        defer { cond.unlock() }
        return callerThreadSignatures
    }

    /// The token objects of a key, for ``readAttribute(keyID:of:type:)``.
    enum KeyObject {
        case privateKey, publicKey
        /// What signs: the private key's session copy (or the private key, if the token made none).
        case signing
    }

    /// Reads an attribute of one of a key's objects: tests check that `CKA_VALUE` of a private
    /// key, or of its signing copy, answers `CKR_ATTRIBUTE_SENSITIVE`.
    func readAttribute(keyID: String, of object: KeyObject, type: CK_ATTRIBUTE_TYPE) async throws -> Result<[UInt8], SignerError> {
        let calls = self.calls
        return try await submit { session, keys in
            guard let k = keys[keyID] else { return .failure(SignerError(.unknownKey, "no key \(keyID)")) }
            let handle = switch object {
            case .privateKey: k.privateHandle
            case .publicKey: k.publicHandle
            case .signing: k.signingHandle
            }
            return .success(calls.attribute(session: session, object: handle, type))
        }
    }

    /// `C_SetPIN` on a logged-in session: changes the token's user PIN (tests; an operator
    /// would use the HSM's own tool).
    func changeUserPIN(old: String, new: String) async throws {
        let f = module.functions
        let rv: CK_RV = try await submit { session, _ in
            var o = Array(old.utf8), n = Array(new.utf8)
            let rv = o.withUnsafeMutableBufferPointer { op in
                n.withUnsafeMutableBufferPointer { np in
                    f.pointee.C_SetPIN(session, op.baseAddress, CK_ULONG(op.count), np.baseAddress, CK_ULONG(np.count))
                }
            }
            return .success(rv)
        }
        guard rv == CKR_OK else { throw SignerError.pkcs11(rv, "C_SetPIN", code: .invalidArgument) }
    }

    /// Destroys a key's private token object, as the token's administrators could with another
    /// application; the signer's session copy of it stays (tests).
    func destroyTokenObject(keyID: String) async throws {
        let f = module.functions
        let rv: CK_RV = try await submit { session, keys in
            guard let k = keys[keyID] else { return .failure(SignerError(.unknownKey, "no key \(keyID)")) }
            return .success(f.pointee.C_DestroyObject(session, k.privateHandle))
        }
        guard rv == CKR_OK else { throw SignerError.pkcs11(rv, "C_DestroyObject") }
    }

    /// Closes every session of the token behind the signer's back, as an HSM restart would.
    func closeSessionsBehindTheSignersBack() {
        cond.lock()
        let slot = self.slot
        cond.unlock()
        calls.closeAllSessions(slot: slot)
    }

    /// The raw baseline of `countersign bench sign`: a tight C loop (`cs_p11_bench`) of
    /// `C_SignInit` + `C_Sign` over a fixed digest, on `threads` extra sessions of the same token,
    /// with the object the signer signs with (the key's session copy when the token made one), for `seconds`.
    /// - Returns: signatures made and the wall time they took.
    public func _rawSigningBaseline(keyID: String, threads: Int, seconds: Double) async throws -> (signatures: UInt64, seconds: Double) {
        cond.lock()
        let slot = self.slot
        let handles = keys[keyID]
        let ok: Bool = if case .available = state { true } else { false }
        cond.unlock()
        guard ok else { throw SignerError(.unavailable, "token unavailable") }
        guard let handles else { throw SignerError(.unknownKey, "the token holds no key \(keyID)") }
        var benchSessions: [CK_SESSION_HANDLE] = []
        defer { for s in benchSessions { _ = module.functions.pointee.C_CloseSession(s) } }
        for _ in 0..<threads { benchSessions.append(try calls.openSession(slot: slot)) }
        let module = self.module
        let sessionsCopy = benchSessions
        let kind: Int32 = handles.key.algorithm == .rsaPSS4096 ? 1 : 0
        return try await withCheckedThrowingContinuation { (c: CheckedContinuation<(signatures: UInt64, seconds: Double), Error>) in
            let t = Thread {
                var total: UInt64 = 0
                var elapsed: Double = 0
                let rv = sessionsCopy.withUnsafeBufferPointer {
                    cs_p11_bench(module.functions, $0.baseAddress, Int32(threads), handles.signingHandle, kind, seconds, &total, &elapsed)
                }
                if rv == CKR_OK { c.resume(returning: (total, elapsed)) } else { c.resume(throwing: SignerError.pkcs11(rv, "C_Sign")) }
            }
            t.start()
        }
    }

    // MARK: the pool

    /// Runs `work` on a session of the pool: on the caller's own thread when the token signs as
    /// fast as CPU work and a session is free with nothing queued (see ``runOnCallersThread(_:)``),
    /// else on a signing thread.
    /// - Parameter signature: `work` is one signature (short); only a signature may run on the
    ///   caller's thread, never key generation or other token administration.
    private func submit<T: Sendable>(signature: Bool = false,
                                     _ work: @escaping (CK_SESSION_HANDLE, [String: KeyHandles]) -> Result<T, SignerError>) async throws -> T {
        if signature, let result = runOnCallersThread(work) { return try result.get() }
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
            let job = Job(
                isSignature: signature,
                run: { session, keys in
                    switch work(session, keys) {
                    case .success(let value):
                        return (nil, { continuation.resume(returning: value) })
                    case .failure(let error):
                        return (Self.takesTheSignerDown(error) ? error : nil, { continuation.resume(throwing: error) })
                    }
                },
                fail: { continuation.resume(throwing: $0) })
            cond.lock()
            guard case .available = state, !shuttingDown else {
                let a = availabilityLocked
                cond.unlock()
                if case .unavailable(let e) = a { job.fail(e) } else { job.fail(SignerError(.unavailable, "token unavailable")) }
                return
            }
            queue.append(job)
            cond.signalWork()
            cond.unlock()
        }
    }

    /// Runs one signature on the calling thread if there are sessions for every core
    /// (``callersMaySign``) and the token has been fast (``signNanos`` below
    /// ``SignerOptions/callerThreadLimitSeconds``). When every session is busy, the caller waits
    /// for one, as for a lock: with a session per core they are busy with work as short as its
    /// own (other callers' signatures, or the signing threads finishing the jobs queued before the
    /// token was measured, which thus drain). It waits at most ``sessionWaitSeconds``, so that a
    /// token that stalls holds callers' threads only that long. `nil`: submit it to the signing
    /// threads instead.
    private func runOnCallersThread<T>(_ work: (CK_SESSION_HANDLE, [String: KeyHandles]) -> Result<T, SignerError>) -> Result<T, SignerError>? {
        guard callersMaySign else { return nil }
        cond.lock()
        var session: CK_SESSION_HANDLE?
        while signNanos < options.callerThreadLimitSeconds * 1e9, isAvailableLocked, !shuttingDown {
            session = freeSessions.popLast()
            if session != nil { break }
            sessionWaiters += 1
            let woken = cond.waitSession(seconds: Self.sessionWaitSeconds)
            sessionWaiters -= 1
            if !woken { break }
        }
        guard let session else {
            cond.unlock()
            return nil
        }
        let keys = self.keys
        let generation = moduleGeneration
        inFlight += 1
        callerThreadSignatures += 1
        cond.unlock()

        let started = DispatchTime.now().uptimeNanoseconds
        let result = work(session, keys)
        let elapsed = DispatchTime.now().uptimeNanoseconds - started

        var failure: SignerError?
        if case .failure(let e) = result, Self.takesTheSignerDown(e) { failure = e }
        cond.lock()
        finishLocked(session: session, signatureNanos: elapsed, generation: generation, failure: failure)
        cond.unlock()
        return result
    }

    /// Longest wait of a caller for a free session before it hands its signature to the signing
    /// threads.
    static let sessionWaitSeconds = 0.002

    /// Gives a session back after a call, records a signature's time, and takes the signer down
    /// after a token failure. Called with the lock held.
    private func finishLocked(session: CK_SESSION_HANDLE, signatureNanos: UInt64?, generation: Int, failure: SignerError?) {
        inFlight -= 1
        if generation == moduleGeneration {
            freeSessions.append(session)
            if queueHead < queue.count { cond.signalWork() }
            if sessionWaiters > 0 { cond.signalSession() }
        }
        if let n = signatureNanos {
            signNanos = signNanos.isFinite ? 0.9 * signNanos + 0.1 * Double(n) : Double(n)
        }
        if let failure, generation == moduleGeneration, isAvailableLocked {
            becomeUnavailableLocked(failure)
        }
        if inFlight == 0 && (!isAvailableLocked || shuttingDown) { cond.broadcastControl() }
    }

    /// Only token failures take the signer down; a wrong key id is the caller's problem.
    private static func takesTheSignerDown(_ error: SignerError) -> Bool {
        error.code == .unavailable || error.code == .keyGeneration && error.returnValue.map(isTokenFailure) == true
    }

    /// Return values after which the sessions cannot be trusted any more.
    private static func isTokenFailure(_ rv: UInt) -> Bool {
        rv != CKR_MECHANISM_INVALID && rv != CKR_ARGUMENTS_BAD && rv != CKR_TEMPLATE_INCONSISTENT
    }

    /// Most callers a signing thread resumes at once.
    private static let completionBatch = 8

    /// A signing thread. Each resumption of an async caller costs a thread wake-up in the
    /// concurrency runtime; under load (a backlog of at least two jobs) the thread therefore
    /// resumes its callers in batches of up to ``completionBatch``, and always before it waits for
    /// work, so a caller is held back by at most a few signatures and never indefinitely.
    private func workerLoop() {
        var completions: [() -> Void] = []
        completions.reserveCapacity(Self.completionBatch)
        func flush() {
            for c in completions { c() }
            completions.removeAll(keepingCapacity: true)
        }
        cond.lock()
        while true {
            let idle = !jobForASigningThreadLocked
            if idle && !completions.isEmpty {
                cond.unlock()
                flush()
                cond.lock()
                continue
            }
            while !shuttingDown && !jobForASigningThreadLocked {
                cond.waitWork()
            }
            if shuttingDown { break }
            let job = queue[queueHead]
            queueHead += 1
            if queueHead > 1024 && queueHead * 2 > queue.count {
                queue.removeFirst(queueHead)
                queueHead = 0
            }
            let backlog = queue.count - queueHead
            let session = freeSessions.removeLast()
            let keys = self.keys
            let generation = moduleGeneration
            inFlight += 1
            cond.unlock()

            let started = job.isSignature ? DispatchTime.now().uptimeNanoseconds : 0
            let (failure, complete) = job.run(session, keys)
            let elapsed = job.isSignature ? DispatchTime.now().uptimeNanoseconds - started : nil
            completions.append(complete)
            if backlog < 2 || failure != nil || completions.count >= Self.completionBatch {
                flush()
            }

            cond.lock()
            finishLocked(session: session, signatureNanos: elapsed, generation: generation, failure: failure)
        }
        runningThreads -= 1
        cond.broadcastControl()
        cond.unlock()
        flush()
    }

    private var isAvailableLocked: Bool { if case .available = state { true } else { false } }

    /// Whether a signing thread should take a queued job now: one waits, a session is free, and no
    /// caller waits for that session to sign on its own thread (callers go first, so that once the
    /// token is known to be fast the queue drains and stays empty).
    private var jobForASigningThreadLocked: Bool {
        queueHead < queue.count && isAvailableLocked && !freeSessions.isEmpty && sessionWaiters == 0
    }

    /// Marks the signer unavailable, fails queued jobs and wakes the supervisor. Called with the lock held.
    private func becomeUnavailableLocked(_ error: SignerError) {
        state = .unavailable(error)
        cond.broadcastSession()
        let pending = drainLocked()
        notifyLocked()
        cond.broadcastControl()
        logger.error("signer unavailable; will reconnect", metadata: [
            "cs.reason": "\(error.message)", "cs.pkcs11_rv": "\(error.returnValueName ?? "-")", "cs.token": "\(settings.tokenLabel)",
        ])
        for job in pending { job.fail(error) }
    }

    private func drainLocked() -> [Job] {
        let pending = Array(queue[queueHead...])
        queue.removeAll(keepingCapacity: true)
        queueHead = 0
        return pending
    }

    private func notifyLocked() {
        let a = availabilityLocked
        for o in observers.values { o.yield(a) }
    }

    private func supervisorLoop() {
        var backoff = options.initialBackoffSeconds
        var attempts = 0
        cond.lock()
        while !shuttingDown {
            if isAvailableLocked {
                backoff = options.initialBackoffSeconds
                let woke = cond.waitControl(seconds: options.probeIntervalSeconds)
                guard !woke, !shuttingDown, isAvailableLocked else { continue }
                let slot = self.slot
                let generation = moduleGeneration
                let probe = probeSession
                let keys = self.keys
                cond.unlock()
                let failure = self.probe(slot: slot, session: probe, keys: keys)
                cond.lock()
                if let failure, generation == moduleGeneration, isAvailableLocked {
                    becomeUnavailableLocked(failure)
                }
                continue
            }
            // Unavailable: wait for the sessions to go quiet, then reconnect.
            while inFlight > 0 && !shuttingDown { cond.waitControl() }
            if shuttingDown { break }
            attempts += 1
            cond.unlock()
            var failure: SignerError?
            do { try connect() } catch let e as SignerError { failure = e } catch {
                failure = SignerError(.unavailable, "token unavailable", cause: error)
            }
            cond.lock()
            if shuttingDown { break }
            if let failure {
                let previous: SignerError? = if case .unavailable(let e) = state { e } else { nil }
                state = .unavailable(failure)
                if previous != failure {
                    notifyLocked()
                    logger.warning("signer still unavailable; retrying", metadata: [
                        "cs.reason": "\(failure.message)", "cs.pkcs11_rv": "\(failure.returnValueName ?? "-")",
                        "cs.attempt": "\(attempts)", "cs.backoff_s": "\(backoff)",
                    ])
                }
                cond.waitControl(seconds: backoff)
                backoff = min(options.maximumBackoffSeconds, backoff * 2)
            } else {
                logger.notice("signer available again", metadata: ["cs.attempts": "\(attempts)", "cs.token": "\(settings.tokenLabel)"])
                attempts = 0
            }
        }
        runningThreads -= 1
        cond.broadcastControl()
        cond.unlock()
    }

    /// (Re-)initialises the module, finds the token, opens and logs in the sessions and finds the
    /// keys. On success the signer is available.
    private func connect() throws {
        cond.lock()
        let first = !connectedOnce
        let seen = moduleGeneration
        let refused = refusedPINDigest
        cond.unlock()

        let generation = first ? try module.ensureInitialized() : try module.reinitialize(seenGeneration: seen)
        // Whatever happens next, the sessions of older generations are gone: the next attempt
        // must re-initialise again (SoftHSM sees a restored token only after C_Initialize).
        cond.lock()
        self.connectedOnce = true
        self.moduleGeneration = generation
        cond.unlock()
        let slot = try calls.findSlot(label: settings.tokenLabel)
        let pin: String
        do { pin = try settings.pin.read() } catch {
            throw SignerError(.unavailable, "token unavailable: cannot read the PIN from \(settings.pin)", operation: "read PIN")
        }
        let digest = Array(SHA256.hash(data: Array(pin.utf8)))
        if let refused, refused == digest {
            throw SignerError(.unavailable,
                              "token unavailable: the token refused this PIN (CKR_PIN_INCORRECT); waiting for a different PIN in \(settings.pin)",
                              returnValue: UInt(CKR_PIN_INCORRECT), operation: "C_Login")
        }
        var opened: [CK_SESSION_HANDLE] = []
        do {
            for _ in 0..<max(1, settings.sessions) { opened.append(try calls.openSession(slot: slot)) }
            let probe = try calls.openSession(slot: slot)
            opened.append(probe)
            do {
                try calls.login(session: opened[0], pin: pin)
            } catch let e as SignerError where e.returnValue == UInt(CKR_PIN_INCORRECT) {
                cond.lock()
                refusedPINDigest = digest
                cond.unlock()
                throw SignerError(.unavailable, "token unavailable: C_Login returned CKR_PIN_INCORRECT (PIN from \(settings.pin))",
                                  returnValue: e.returnValue, operation: "C_Login")
            }
            let found = try discoverKeys(session: opened[0])
            cond.lock()
            self.slot = slot
            self.sessions = Array(opened.dropLast())
            self.freeSessions = self.sessions
            self.probeSession = probe
            self.keys = found
            self.moduleGeneration = generation
            self.connectedOnce = true
            self.refusedPINDigest = nil
            self.state = .available
            notifyLocked()
            cond.broadcastWork()
            cond.broadcastControl()
            cond.unlock()
        } catch {
            for s in opened { _ = module.functions.pointee.C_CloseSession(s) }
            throw error
        }
    }

    /// The supervisor's check of a healthy signer: the token answers `C_GetTokenInfo`, and every
    /// key's token object is still there. The second matters because the signer signs with session
    /// copies of the keys: a key destroyed in the token (by its administrators, with another
    /// application) must stop signing here too, which its copy alone would not. Returns the failure
    /// that takes the signer down, if any.
    private func probe(slot: CK_SLOT_ID, session: CK_SESSION_HANDLE?, keys: [String: KeyHandles]) -> SignerError? {
        let rv = calls.tokenInfoRV(slot: slot)
        guard rv == CKR_OK else { return .pkcs11(rv, "C_GetTokenInfo") }
        guard let session else { return nil }
        for k in keys.values.sorted(by: { $0.key.keyID < $1.key.keyID }) {
            if case .failure(let error) = calls.attribute(session: session, object: k.privateHandle, CK_ATTRIBUTE_TYPE(CKA_ID)) {
                return SignerError(.unavailable, "token unavailable: the token object of key \(k.key.keyID) no longer answers (\(error.returnValueName ?? error.message))",
                                   returnValue: error.returnValue, operation: "C_GetAttributeValue")
            }
        }
        return nil
    }

    private func discoverKeys(session: CK_SESSION_HANDLE) throws -> [String: KeyHandles] {
        var found: [String: KeyHandles] = [:]
        for priv in try calls.find(session: session, class: CK_OBJECT_CLASS(CKO_PRIVATE_KEY)) {
            guard case .success(let id) = calls.attribute(session: session, object: priv, CK_ATTRIBUTE_TYPE(CKA_ID)), !id.isEmpty,
                  case .success(let typeBytes) = calls.attribute(session: session, object: priv, CK_ATTRIBUTE_TYPE(CKA_KEY_TYPE)),
                  let pub = try calls.find(session: session, class: CK_OBJECT_CLASS(CKO_PUBLIC_KEY), id: id).first
            else { continue }
            let keyType = typeBytes.withUnsafeBytes { $0.loadUnaligned(as: CK_KEY_TYPE.self) }
            let algorithm: KeyAlgorithm
            switch keyType {
            case CK_KEY_TYPE(CKK_EC): algorithm = .ecdsaP256
            case CK_KEY_TYPE(CKK_RSA): algorithm = .rsaPSS4096
            default: continue
            }
            guard let spki = try? Self.readSPKI(calls: calls, session: session, publicHandle: pub, algorithm: algorithm) else { continue }
            var label = ""
            if case .success(let l) = calls.attribute(session: session, object: priv, CK_ATTRIBUTE_TYPE(CKA_LABEL)) {
                label = String(decoding: l, as: UTF8.self)
            }
            let key = TokenKey(keyID: KeyID.of(spkiDER: spki), spkiDER: spki, algorithm: algorithm, label: label, ckaID: id)
            found[key.keyID] = KeyHandles(key: key, privateHandle: priv, publicHandle: pub,
                                          signingHandle: Self.signingCopy(calls: calls, session: session, of: priv, logger: logger))
        }
        return found
    }

    private static func readSPKI(calls: PKCS11Calls, session: CK_SESSION_HANDLE, publicHandle: CK_OBJECT_HANDLE,
                                 algorithm: KeyAlgorithm) throws -> [UInt8] {
        switch algorithm {
        case .ecdsaP256:
            let point = try calls.attribute(session: session, object: publicHandle, CK_ATTRIBUTE_TYPE(CKA_EC_POINT)).get()
            return try PublicKeyEncoding.p256SPKI(ecPoint: point)
        case .rsaPSS4096:
            let n = try calls.attribute(session: session, object: publicHandle, CK_ATTRIBUTE_TYPE(CKA_MODULUS)).get()
            let e = try calls.attribute(session: session, object: publicHandle, CK_ATTRIBUTE_TYPE(CKA_PUBLIC_EXPONENT)).get()
            return PublicKeyEncoding.rsaSPKI(modulus: n, exponent: e)
        }
    }
}
