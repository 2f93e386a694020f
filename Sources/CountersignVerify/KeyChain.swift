public import CountersignWire

/// Offline verification of a keyring's history: from the very first key's public key and the
/// key-event statements, in order, to today's key set.
///
/// The rules, which the signer follows when it writes the events:
/// - The first statement is a `KEY_GENERATED` event for exactly the pinned first key, signed by it.
/// - A `ROTATION_PROPOSED` event must be signed by the key active at that point.
/// - A `KEY_TRANSITION` event names the active key as `old_key_id` and carries the new key's SPKI;
///   the same statement bytes must appear signed by the old key and by the new key (two consecutive
///   statements, old key first). Only then does the new key become active and the old one retire.
/// - Nothing else is accepted: an unknown kind, a statement of another payload type, a signature by
///   any other key, or a transition left half-signed at the end is an error naming its index.
public enum KeyChain {
    /// One key of the verified key set.
    public struct Key: Sendable, Hashable {
        public var key: VerificationKey
        /// The algorithm name recorded in the key event (`ecdsa-p256`, `rsa-pss-4096`).
        public var algorithmName: String
        public var notBeforeUnixMs: Int64
        /// `nil` while the key is active.
        public var notAfterUnixMs: Int64?
        public var keyID: String { key.keyID }
        public var isActive: Bool { notAfterUnixMs == nil }
    }

    /// The result: every key, oldest first; the last one is active.
    public struct KeySet: Sendable, Hashable {
        public var keys: [Key]
        /// Number of transitions followed.
        public var transitions: Int
        public var active: Key { keys[keys.count - 1] }

        /// The key with this id, if it is in the set.
        public func key(id: String) -> Key? { keys.first { $0.keyID == id } }

        /// Verifies a statement signed by any key of the set that was valid when it signed:
        /// - Parameter atUnixMs: when the statement claims to have been signed; `nil` skips the window check.
        /// - Throws: ``VerificationError``.
        public func verify(_ statement: SignedStatement, atUnixMs: Int64? = nil) throws {
            guard let k = key(id: statement.keyID) else {
                throw VerificationError(.unknownKey, "key \(statement.keyID) is not in the verified key set")
            }
            if let t = atUnixMs {
                if t < k.notBeforeUnixMs || (k.notAfterUnixMs.map { t > $0 } ?? false) {
                    throw VerificationError(.wrongKey, "key \(k.keyID) was not valid at \(t)")
                }
            }
            try k.key.verify(statement)
        }
    }

    /// Follows the key events from the pinned first key.
    /// - Parameters:
    ///   - firstKeySPKI: DER SubjectPublicKeyInfo of the first key, obtained out of band.
    ///   - events: the key-event statements in the order they were recorded.
    /// - Returns: the key set the events lead to.
    /// - Throws: ``VerificationError`` naming the index of the first statement that does not verify.
    public static func verify(firstKeySPKI: [UInt8], events: [SignedStatement]) throws -> KeySet {
        try follow(firstKeySPKI: firstKeySPKI, events: events, fromThePinnedKey: false)
    }

    /// Follows the key transitions that `ListKeys` lists (each `KEY_TRANSITION` statement signed
    /// by the old key, then by the new one) from the pinned first key, which is trusted as given:
    /// `ListKeys` does not carry the first key's own `KEY_GENERATED` event. The first key's
    /// `notBeforeUnixMs` is then 0.
    /// - Parameter transitions: the statements with each of their signatures, in order.
    /// - Throws: ``VerificationError`` naming the index of the first statement that does not verify.
    public static func verify(firstKeySPKI: [UInt8], transitions: [SignedStatement]) throws -> KeySet {
        try follow(firstKeySPKI: firstKeySPKI, events: transitions, fromThePinnedKey: true)
    }

    private static func follow(firstKeySPKI: [UInt8], events: [SignedStatement], fromThePinnedKey: Bool) throws -> KeySet {
        let first = try VerificationKey(spkiDER: firstKeySPKI)
        var keys: [Key] = fromThePinnedKey
            ? [Key(key: first, algorithmName: first.algorithm.rawValue, notBeforeUnixMs: 0, notAfterUnixMs: nil)] : []
        var transitions = 0
        var pending: (index: Int, statement: KeyEventStatement, payload: [UInt8], newKey: VerificationKey)?

        func fail(_ index: Int, _ code: VerificationError.Code, _ message: String) -> VerificationError {
            VerificationError(code, "key event \(index): \(message)")
        }

        for (index, signed) in events.enumerated() {
            guard signed.payloadType == PayloadType.keyEvent else {
                throw fail(index, .malformed, "payload type \(signed.payloadType) is not a key event")
            }
            if let p = pending {
                // The second half of a transition: the same bytes, signed by the new key.
                guard signed.payload == p.payload else {
                    throw fail(index, .malformed, "transition of event \(p.index) is not countersigned by its new key")
                }
                do { try p.newKey.verify(signed) } catch let e as VerificationError {
                    throw fail(index, e.code, "transition not signed by the new key: \(e.message)")
                }
                let at = p.statement.occurredAtUnixMs
                keys[keys.count - 1].notAfterUnixMs = at
                keys.append(Key(key: p.newKey, algorithmName: p.statement.algorithm, notBeforeUnixMs: at, notAfterUnixMs: nil))
                transitions += 1
                pending = nil
                continue
            }
            let event: KeyEventStatement
            do { event = try KeyEventStatement(protobuf: signed.payload) } catch {
                throw fail(index, .malformed, "not a KeyEventStatement: \(error)")
            }
            if keys.isEmpty {
                guard event.kind == .keyGenerated, event.newSPKIDER == firstKeySPKI, event.newKeyID == first.keyID else {
                    throw fail(index, .wrongKey, "the first event must be KEY_GENERATED for the pinned key \(first.keyID)")
                }
                do { try first.verify(signed) } catch let e as VerificationError {
                    throw fail(index, e.code, e.message)
                }
                keys.append(Key(key: first, algorithmName: event.algorithm, notBeforeUnixMs: event.occurredAtUnixMs, notAfterUnixMs: nil))
                continue
            }
            let active = keys[keys.count - 1]
            do { try active.key.verify(signed) } catch let e as VerificationError {
                throw fail(index, e.code, "not signed by the active key \(active.keyID): \(e.message)")
            }
            switch event.kind {
            case .rotationProposed:
                continue
            case .keyTransition:
                guard event.oldKeyID == active.keyID else {
                    throw fail(index, .wrongKey, "transition hands over from \(event.oldKeyID), the active key is \(active.keyID)")
                }
                let newKey: VerificationKey
                do { newKey = try VerificationKey(spkiDER: event.newSPKIDER) } catch let e as VerificationError {
                    throw fail(index, e.code, e.message)
                }
                guard newKey.keyID == event.newKeyID, keys.allSatisfy({ $0.keyID != newKey.keyID }) else {
                    throw fail(index, .malformed, "new key id does not match its SPKI, or the key was used before")
                }
                guard event.occurredAtUnixMs >= active.notBeforeUnixMs else {
                    throw fail(index, .malformed, "transition predates the active key")
                }
                pending = (index, event, signed.payload, newKey)
            default:
                throw fail(index, .malformed, "event kind \(event.kind) is not allowed here")
            }
        }
        if let p = pending {
            throw fail(p.index, .malformed, "transition is signed by the old key only")
        }
        guard !keys.isEmpty else {
            throw VerificationError(.malformed, "no key events")
        }
        return KeySet(keys: keys, transitions: transitions)
    }
}

extension KeyChain {
    /// Follows what `ListKeys` answered from the pinned first key (``verify(firstKeySPKI:transitions:)``).
    public static func verify(firstKeySPKI: [UInt8], listed: ListKeysResponse) throws -> KeySet {
        let statements = listed.transitions.flatMap { transition in
            transition.signatures.map {
                SignedStatement(payloadType: PayloadType.keyEvent, payload: transition.statement, signature: $0.signature, keyID: $0.keyID)
            }
        }
        return try verify(firstKeySPKI: firstKeySPKI, transitions: statements)
    }
}
