import CPKCS11
import Foundation

/// A PKCS#11 module loaded with dlopen, initialised with `CKF_OS_LOCKING_OK`.
///
/// One per module path per process: PKCS#11 state (and SoftHSM's `SOFTHSM2_CONF`, read at
/// `C_Initialize`) is process-wide. Never fork after `C_Initialize`.
final class PKCS11Module: @unchecked Sendable {
    let path: String
    let functions: CK_FUNCTION_LIST_PTR
    private let handle: UnsafeMutableRawPointer?
    private let lock = NSLock()
    private var initialized = false
    /// Bumped on every successful (re-)initialisation; sessions and handles of an older generation are dead.
    private(set) var generation = 0

    private static let registryLock = NSLock()
    nonisolated(unsafe) private static var registry: [String: PKCS11Module] = [:]
    nonisolated(unsafe) private static var softHSM2Conf: String?

    /// The process's module for `path`, loaded once.
    /// - Parameter softHSM2Conf: exported as `SOFTHSM2_CONF` before the first `C_Initialize`; a
    ///   different value later in the same process is refused (SoftHSM reads it only then).
    static func shared(path: String, softHSM2Conf: String?) throws -> PKCS11Module {
        registryLock.lock()
        defer { registryLock.unlock() }
        if let conf = softHSM2Conf {
            // SoftHSM answers a configuration it cannot read with CKR_GENERAL_ERROR from
            // C_Initialize, which names neither the file nor the setting: say both here.
            guard FileManager.default.isReadableFile(atPath: conf) else {
                throw SignerError(.unavailable, "cannot read the SoftHSM configuration \(conf) (token.softhsm2_conf)")
            }
            if let existing = Self.softHSM2Conf, existing != conf {
                throw SignerError(.invalidArgument,
                                  "this process already uses SOFTHSM2_CONF \(existing); one SoftHSM configuration per process")
            }
            if Self.softHSM2Conf == nil {
                setenv("SOFTHSM2_CONF", conf, 1)
                Self.softHSM2Conf = conf
            }
        }
        if let m = registry[path] { return m }
        let m = try PKCS11Module(path: path)
        registry[path] = m
        return m
    }

    private init(path: String) throws {
        self.path = path
        var h: UnsafeMutableRawPointer?
        var f: CK_FUNCTION_LIST_PTR?
        var err = [CChar](repeating: 0, count: 512)
        let rv = cs_p11_load(path, &h, &f, &err, UInt(err.count))
        guard rv == CKR_OK, let f else {
            let text = String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw SignerError(.unavailable, "cannot load PKCS#11 module \(path): \(text)", returnValue: rv,
                              operation: "dlopen")
        }
        self.handle = h
        self.functions = f
    }

    /// Calls `C_Initialize` once. Returns the current generation.
    @discardableResult
    func ensureInitialized() throws -> Int {
        lock.lock()
        defer { lock.unlock() }
        if initialized { return generation }
        try initializeLocked()
        return generation
    }

    /// `C_Finalize` then `C_Initialize`, unless someone already did it since `seenGeneration`
    /// (so that two signers recovering at once re-initialise once). Everything of older
    /// generations (sessions, logins, object handles) is gone afterwards.
    @discardableResult
    func reinitialize(seenGeneration: Int) throws -> Int {
        lock.lock()
        defer { lock.unlock() }
        if initialized && generation != seenGeneration { return generation }
        if initialized {
            _ = functions.pointee.C_Finalize(nil)
            initialized = false
        }
        try initializeLocked()
        return generation
    }

    private func initializeLocked() throws {
        let rv = cs_p11_initialize(functions)
        guard rv == CKR_OK || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED else {
            throw SignerError.pkcs11(rv, "C_Initialize")
        }
        initialized = true
        generation += 1
    }
}

/// Thin checked wrappers over the PKCS#11 calls the signer uses. Every failure is a
/// ``SignerError`` naming the function and its `CKR_` value.
struct PKCS11Calls {
    let f: CK_FUNCTION_LIST_PTR

    func findSlot(label: String) throws -> CK_SLOT_ID {
        var slot: CK_SLOT_ID = 0
        let rv = cs_p11_find_slot(f, label, &slot)
        guard rv == CKR_OK else {
            throw SignerError(.unavailable, "token unavailable: no token labelled '\(label)' (\(CKR.name(rv)))",
                              returnValue: rv, operation: "C_GetSlotList")
        }
        return slot
    }

    func openSession(slot: CK_SLOT_ID) throws -> CK_SESSION_HANDLE {
        var s: CK_SESSION_HANDLE = 0
        let rv = f.pointee.C_OpenSession(slot, CK_FLAGS(CKF_SERIAL_SESSION | CKF_RW_SESSION), nil, nil, &s)
        guard rv == CKR_OK else { throw SignerError.pkcs11(rv, "C_OpenSession") }
        return s
    }

    /// Logs the user in. `CKR_USER_ALREADY_LOGGED_IN` counts as success.
    func login(session: CK_SESSION_HANDLE, pin: String) throws {
        var bytes = Array(pin.utf8)
        defer { for i in bytes.indices { bytes[i] = 0 } }
        let rv = bytes.withUnsafeMutableBufferPointer {
            f.pointee.C_Login(session, CK_USER_TYPE(CKU_USER), $0.baseAddress, CK_ULONG($0.count))
        }
        guard rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN else { throw SignerError.pkcs11(rv, "C_Login") }
    }

    func closeAllSessions(slot: CK_SLOT_ID) {
        _ = f.pointee.C_CloseAllSessions(slot)
    }

    func tokenInfoRV(slot: CK_SLOT_ID) -> CK_RV {
        var info = CK_TOKEN_INFO()
        return f.pointee.C_GetTokenInfo(slot, &info)
    }

    func find(session: CK_SESSION_HANDLE, class cls: CK_OBJECT_CLASS, id: [UInt8]? = nil) throws -> [CK_OBJECT_HANDLE] {
        var out = [CK_OBJECT_HANDLE](repeating: 0, count: 1024)
        var count: UInt = 0
        let rv: CK_RV
        if let id {
            rv = id.withUnsafeBufferPointer { cs_p11_find(f, session, cls, $0.baseAddress, UInt($0.count), &out, UInt(out.count), &count) }
        } else {
            rv = cs_p11_find(f, session, cls, nil, 0, &out, UInt(out.count), &count)
        }
        guard rv == CKR_OK else { throw SignerError.pkcs11(rv, "C_FindObjects") }
        return Array(out.prefix(Int(count)))
    }

    /// An attribute's value, or the `CKR_` value the token answered with.
    func attribute(session: CK_SESSION_HANDLE, object: CK_OBJECT_HANDLE, _ type: CK_ATTRIBUTE_TYPE) -> Result<[UInt8], SignerError> {
        var len: UInt = 0
        var rv = cs_p11_get_attribute(f, session, object, type, nil, &len)
        guard rv == CKR_OK else { return .failure(.pkcs11(rv, "C_GetAttributeValue")) }
        var buf = [UInt8](repeating: 0, count: Int(len))
        rv = buf.withUnsafeMutableBytes { cs_p11_get_attribute(f, session, object, type, $0.baseAddress, &len) }
        guard rv == CKR_OK else { return .failure(.pkcs11(rv, "C_GetAttributeValue")) }
        return .success(Array(buf.prefix(Int(len))))
    }

    func generate(session: CK_SESSION_HANDLE, rsaBits: Int?, label: String, id: [UInt8]) throws -> (pub: CK_OBJECT_HANDLE, priv: CK_OBJECT_HANDLE) {
        var pub: CK_OBJECT_HANDLE = 0
        var priv: CK_OBJECT_HANDLE = 0
        let rv = id.withUnsafeBufferPointer {
            cs_p11_generate(f, session, rsaBits == nil ? 0 : 1, UInt(rsaBits ?? 0), label, $0.baseAddress, UInt($0.count), &pub, &priv)
        }
        guard rv == CKR_OK else { throw SignerError.pkcs11(rv, "C_GenerateKeyPair", code: .keyGeneration) }
        return (pub, priv)
    }

    /// `C_CopyObject` of a key into a session object (`CKA_TOKEN` false) of this application's
    /// sessions: the copy stays in the token, and keeps the key's `CKA_SENSITIVE` and
    /// `CKA_EXTRACTABLE` (PKCS#11 lets a copy make neither weaker). It ends with the session that made it.
    func sessionCopy(session: CK_SESSION_HANDLE, of object: CK_OBJECT_HANDLE) -> Result<CK_OBJECT_HANDLE, SignerError> {
        var no = CK_BBOOL(CK_FALSE)
        var copy: CK_OBJECT_HANDLE = 0
        let rv = withUnsafeMutablePointer(to: &no) { value in
            var template = CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_TOKEN), pValue: value, ulValueLen: CK_ULONG(MemoryLayout<CK_BBOOL>.size))
            return f.pointee.C_CopyObject(session, object, &template, 1, &copy)
        }
        guard rv == CKR_OK else { return .failure(.pkcs11(rv, "C_CopyObject")) }
        return .success(copy)
    }

    /// One signature over a 32-byte digest: raw r‖s for ECDSA, the PSS signature for RSA.
    func sign(session: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE, rsa: Bool, digest: [UInt8]) -> Result<[UInt8], SignerError> {
        // 64 bytes for P-256 r||s; 512 for RSA-4096 (a larger key answers CKR_BUFFER_TOO_SMALL).
        let capacity = rsa ? 1024 : 64
        var rv: CK_RV = CK_RV(CKR_OK)
        let sig = [UInt8](unsafeUninitializedCapacity: capacity) { buffer, initialized in
            var len = UInt(capacity)
            rv = digest.withUnsafeBufferPointer { d in
                cs_p11_sign(f, session, key, rsa ? 1 : 0, d.baseAddress, UInt(d.count), buffer.baseAddress, &len)
            }
            initialized = rv == CKR_OK ? Int(min(len, UInt(capacity))) : 0
        }
        guard rv == CKR_OK else { return .failure(.pkcs11(rv, "C_Sign")) }
        return .success(sig)
    }
}
