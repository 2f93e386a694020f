public import CountersignSigner
public import CountersignVerify
import CountersignWire
public import Logging
import Foundation
import PostgresNIO

extension Ledger {
    /// Every entry of `kind`, oldest first. Meant for the rare kinds (key events); a partial index
    /// (migration 2) keeps it from scanning the whole ledger.
    public func entries(kind: EntryKind) async throws -> [StoredEntry] {
        let k = kind.rawValue
        return try await read("reading the \(k) entries") { c, l in
            let rows = try await c.query("SELECT \(unescaped: EntryRow.columns) FROM entries WHERE kind = \(k) ORDER BY idx", logger: l)
            var all: [StoredEntry] = []
            for try await row in rows { all.append(try EntryRow.decode(row)) }
            return all
        }
    }
}

/// The keyring's key events kept in the ledger itself, as entries of kind `key-event`: the key
/// chain then has the ledger's tamper evidence, and `ledger verify` follows every rotation from the
/// first key without any other file.
///
/// Appends need the ledger lease (the epoch fence), like every append.
public struct LedgerKeyEventLog: KeyEventLog {
    public let ledger: Ledger

    public init(ledger: Ledger) {
        self.ledger = ledger
    }

    public func append(_ statement: SignedStatement) async throws {
        _ = try await ledger.append(LedgerEntry(kind: .keyEvent, statement: statement, agent: Self.agent(of: statement), owner: ""))
    }

    public func readAll() async throws -> [SignedStatement] {
        try await ledger.entries(kind: .keyEvent).map(\.statement)
    }

    /// Moves the events of a key-event file (the record of a ceremony held before the database
    /// existed) into the ledger, when the ledger has no key event yet. Does nothing otherwise: once
    /// the ledger holds the keyring, the file is history.
    /// - Returns: how many events were imported.
    @discardableResult
    public func importIfEmpty(from file: FileKeyEventLog, logger: Logger) async throws -> Int {
        guard try await ledger.entries(kind: .keyEvent).isEmpty else { return 0 }
        let events = try await file.readAll()
        guard !events.isEmpty else { return 0 }
        // The chain must verify before it is made permanent.
        guard let first = try? KeyEventStatement(protobuf: events[0].payload), first.kind == .keyGenerated else {
            throw SignerError(.keyChain, "\(file.path): the first event is not KEY_GENERATED; not imported")
        }
        _ = try KeyChain.verify(firstKeySPKI: first.newSPKIDER, events: events)
        _ = try await ledger.append(contentsOf: events.map {
            LedgerEntry(kind: .keyEvent, statement: $0, agent: Self.agent(of: $0), owner: "")
        })
        logger.notice("imported the key-event file into the ledger", metadata: [
            "cs.key_events": "\(file.path)", "cs.count": "\(events.count)",
        ])
        return events.count
    }

    /// The key events a reader of the keyring uses: the ledger's; while the ledger has none (right
    /// after a ceremony, before any node has imported it), the ceremony's file, if it exists.
    /// - Returns: the log, and where it is, for people.
    public func keyring(orCeremony file: FileKeyEventLog) async throws -> (log: any KeyEventLog, source: String) {
        if try await readAll().isEmpty, FileManager.default.fileExists(atPath: file.path) {
            return (file, "\(file.path) (the ceremony's file; a node imports it into the ledger when it starts)")
        }
        return (self, "the ledger (\(ledger.database.database))")
    }

    /// Who caused a key event: the approving officer, else the proposer, else `key-custody`.
    static func agent(of statement: SignedStatement) -> String {
        guard let event = try? KeyEventStatement(protobuf: statement.payload) else { return "key-custody" }
        if !event.approvedBy.isEmpty { return event.approvedBy }
        if !event.proposedBy.isEmpty { return event.proposedBy }
        return "key-custody"
    }
}
