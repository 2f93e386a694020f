public import CountersignVerify
public import Foundation

/// What kind of statement an entry records. Extensible; the raw value is stored in `entries.kind`.
public struct EntryKind: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// A signed decision (APPROVED / VETO / ESCALATE).
    public static let decision = EntryKind(rawValue: "decision")
    /// A verdict on a reported execution.
    public static let execution = EntryKind(rawValue: "execution")
    /// An override step (request, approval, denial).
    public static let override = EntryKind(rawValue: "override")
    /// A key event (a key transition is appended twice, once signed by each key).
    public static let keyEvent = EntryKind(rawValue: "key-event")
    /// A refused or failed attempt.
    public static let refusal = EntryKind(rawValue: "refusal")

    /// The kinds the schema accepts.
    public static let all: [EntryKind] = [.decision, .execution, .override, .keyEvent, .refusal]

    public var description: String { rawValue }
}

/// A signed statement to append, with what the ledger indexes beside it.
public struct LedgerEntry: Sendable, Hashable {
    public var kind: EntryKind
    /// The statement exactly as signed; its leaf hash is `SHA-256(0x00 ‖ statement.payload)`.
    public var statement: SignedStatement
    /// The principal (agent) that asked.
    public var agent: String
    /// The accountable human.
    public var owner: String
    /// The client's request id, for ``Ledger/latest(kind:requestID:)``; `nil` or empty stores NULL.
    public var requestID: String?
    /// A digest of the request (for idempotency checks by the server); `nil` or empty stores NULL.
    public var fingerprint: [UInt8]?

    public init(kind: EntryKind, statement: SignedStatement, agent: String, owner: String,
                requestID: String? = nil, fingerprint: [UInt8]? = nil) {
        self.kind = kind
        self.statement = statement
        self.agent = agent
        self.owner = owner
        self.requestID = requestID
        self.fingerprint = fingerprint
    }
}

/// An entry as stored.
public struct StoredEntry: Sendable, Hashable {
    /// 0-based, gapless: the RFC 6962 leaf index.
    public var index: UInt64
    public var kind: EntryKind
    public var statement: SignedStatement
    public var agent: String
    public var owner: String
    public var requestID: String?
    public var fingerprint: [UInt8]?
    /// The lease epoch of the writer that appended it.
    public var epoch: UInt64
    /// `SHA-256(0x00 ‖ statement.payload)` as stored.
    public var leafHash: [UInt8]
    /// The database's time of the append (`now()` of its transaction).
    public var createdAt: Date

    public init(index: UInt64, kind: EntryKind, statement: SignedStatement, agent: String, owner: String,
                requestID: String?, fingerprint: [UInt8]?, epoch: UInt64, leafHash: [UInt8], createdAt: Date) {
        self.index = index
        self.kind = kind
        self.statement = statement
        self.agent = agent
        self.owner = owner
        self.requestID = requestID
        self.fingerprint = fingerprint
        self.epoch = epoch
        self.leafHash = leafHash
        self.createdAt = createdAt
    }
}

/// A signed checkpoint as stored: what `GetCheckpoint` returns.
public struct StoredCheckpoint: Sendable, Hashable {
    /// The exact signed checkpoint text (C2SP tlog-checkpoint, ends in a newline).
    public var body: [UInt8]
    public var treeSize: UInt64
    public var rootHash: [UInt8]
    /// DSSE payload type of the signature: ``PayloadType/checkpoint``.
    public var payloadType: String
    public var signature: [UInt8]
    public var keyID: String
    public var epoch: UInt64

    public init(body: [UInt8], treeSize: UInt64, rootHash: [UInt8], payloadType: String, signature: [UInt8], keyID: String, epoch: UInt64) {
        self.body = body
        self.treeSize = treeSize
        self.rootHash = rootHash
        self.payloadType = payloadType
        self.signature = signature
        self.keyID = keyID
        self.epoch = epoch
    }

    /// The checkpoint as a signed statement.
    public var statement: SignedStatement {
        SignedStatement(payloadType: payloadType, payload: body, signature: signature, keyID: keyID)
    }

    /// The form `countersign ledger checkpoint` prints and `ledger verify --checkpoint` reads: the
    /// exact signed text, then one line `— <payload type> key <key id> signature <base64>`.
    public var printed: String {
        String(decoding: body, as: UTF8.self) + "— \(payloadType) key \(keyID) signature \(Data(signature).base64EncodedString())\n"
    }

    /// Reads a file holding ``printed`` (a checkpoint someone kept).
    /// - Throws: ``LedgerError`` `invalidArgument` naming the file and what is wrong.
    public init(printedFile path: String) throws {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw LedgerError(.invalidArgument, "cannot read \(path)")
        }
        do {
            try self.init(printed: text)
        } catch let error as LedgerError {
            throw LedgerError(error.code, "\(path): \(error.message)")
        }
    }

    /// Reads ``printed``. The epoch is not in it and is 0.
    /// - Throws: ``LedgerError`` `invalidArgument` naming what is wrong.
    public init(printed: String) throws {
        func bad(_ what: String) -> LedgerError { LedgerError(.invalidArgument, "not a printed checkpoint: \(what)") }
        // A file saved on another system may end its lines in CR LF (one Character in Swift).
        var lines = printed.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
        if lines.last == "" { lines.removeLast() }
        guard let last = lines.last, lines.count >= 4 else { throw bad("expected the checkpoint's text and a signature line") }
        let fields = last.split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count == 6, fields[0] == "—", fields[2] == "key", fields[4] == "signature",
              let signature = Data(base64Encoded: String(fields[5])) else {
            throw bad("the last line must be `— <payload type> key <key id> signature <base64>`")
        }
        let body = Array((lines.dropLast().joined(separator: "\n") + "\n").utf8)
        let parsed: Checkpoint
        do {
            parsed = try Checkpoint(parsing: body)
        } catch {
            throw bad("\(error)")
        }
        self.init(body: body, treeSize: parsed.treeSize, rootHash: parsed.rootHash, payloadType: String(fields[1]),
                  signature: Array(signature), keyID: String(fields[3]), epoch: 0)
    }
}

/// The writer lease: who may append, under which epoch, until when (database clock).
public struct Lease: Sendable, Hashable {
    public var holder: String
    public var epoch: UInt64
    public var expiresAt: Date
    /// Whether the lease had not expired when it was read (by the database's clock).
    public var isLive: Bool

    public init(holder: String, epoch: UInt64, expiresAt: Date, isLive: Bool) {
        self.holder = holder
        self.epoch = epoch
        self.expiresAt = expiresAt
        self.isLive = isLive
    }
}
