public import CountersignConfig
public import CountersignVerify
public import Foundation
public import Logging
import NIOCore
import PostgresNIO

/// The export file of `countersign ledger export`, read by `countersign ledger verify --file`.
///
/// UTF-8 text, one record per line, fields separated by one space, each line ending in `\n`:
///
/// ```
/// countersign-ledger-export 1
/// entry <index> <kind> <epoch> <created_at_unix_us> <payload_type> <key_id> <agent_b64> <owner_b64> <request_id_b64|-> <fingerprint_hex|-> <leaf_hash_hex> <statement_b64> <signature_b64>
/// checkpoint <tree_size> <epoch> <payload_type> <key_id> <root_hash_hex> <body_b64> <signature_b64>
/// end <entries> <checkpoints>
/// ```
///
/// Entries come in index order; a checkpoint of size n comes right after entry n − 1 (size 0:
/// before the first entry). `_b64` is standard base64 with padding; `-` is an absent value.
/// `statement_b64` is the statement exactly as signed, so `sha256(b"\x00" + statement)` is the
/// leaf hash; `body_b64` is the exact signed checkpoint text.
public enum LedgerExportFormat {
    public static let header = "countersign-ledger-export 1"
    /// The longest line a reader accepts: an entry's line is its statement in base64 and a few
    /// hundred bytes, and a statement is at most a frame (`limits.max_frame_bytes`, at most
    /// 256 MiB). A file without newlines is refused here instead of read whole into memory.
    public static let maxLineBytes = 384 << 20

    static func b64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }

    static func line(_ e: StoredEntry) -> String {
        let us = Int64((e.createdAt.timeIntervalSince1970 * 1_000_000).rounded())
        let rid = e.requestID.map { b64(Array($0.utf8)) } ?? "-"
        let fp = e.fingerprint.map { Hex.encode($0) } ?? "-"
        return "entry \(e.index) \(e.kind.rawValue) \(e.epoch) \(us) \(e.statement.payloadType) \(e.statement.keyID) "
            + "\(b64(Array(e.agent.utf8))) \(b64(Array(e.owner.utf8))) \(rid) \(fp) \(Hex.encode(e.leafHash)) "
            + "\(b64(e.statement.payload)) \(b64(e.statement.signature))\n"
    }

    static func line(_ c: StoredCheckpoint) -> String {
        "checkpoint \(c.treeSize) \(c.epoch) \(c.payloadType) \(c.keyID) \(Hex.encode(c.rootHash)) \(b64(c.body)) \(b64(c.signature))\n"
    }

    /// One parsed line.
    public enum Record: Sendable {
        case entry(StoredEntry)
        case checkpoint(StoredCheckpoint)
        case end(entries: UInt64, checkpoints: Int)
    }

    /// Parses one line (without its newline).
    /// - Throws: ``LedgerError`` `invalidArgument` naming what is wrong.
    public static func parse(line: Substring) throws -> Record {
        let f = line.split(separator: " ", omittingEmptySubsequences: false)
        func bad(_ what: String) -> LedgerError { LedgerError(.invalidArgument, "export line: \(what)") }
        func data(_ s: Substring) throws -> [UInt8] {
            guard let d = Data(base64Encoded: String(s)) else { throw bad("bad base64") }
            return Array(d)
        }
        func hex(_ s: Substring) throws -> [UInt8] {
            guard let d = Hex.decode(String(s)) else { throw bad("bad hex") }
            return d
        }
        func text(_ s: Substring) throws -> String { String(decoding: try data(s), as: UTF8.self) }
        switch f.first {
        case "entry":
            guard f.count == 14, let idx = UInt64(f[1]), let epoch = UInt64(f[3]), let us = Int64(f[4]) else { throw bad("malformed entry") }
            let entry = StoredEntry(
                index: idx, kind: EntryKind(rawValue: String(f[2])),
                statement: SignedStatement(payloadType: String(f[5]), payload: try data(f[12]), signature: try data(f[13]), keyID: String(f[6])),
                agent: try text(f[7]), owner: try text(f[8]),
                requestID: f[9] == "-" ? nil : try text(f[9]),
                fingerprint: f[10] == "-" ? nil : try hex(f[10]),
                epoch: epoch, leafHash: try hex(f[11]),
                createdAt: Date(timeIntervalSince1970: Double(us) / 1_000_000))
            return .entry(entry)
        case "checkpoint":
            guard f.count == 8, let size = UInt64(f[1]), let epoch = UInt64(f[2]) else { throw bad("malformed checkpoint") }
            return .checkpoint(StoredCheckpoint(body: try data(f[6]), treeSize: size, rootHash: try hex(f[5]), payloadType: String(f[3]),
                                                signature: try data(f[7]), keyID: String(f[4]), epoch: epoch))
        case "end":
            guard f.count == 3, let n = UInt64(f[1]), let c = Int(f[2]) else { throw bad("malformed end") }
            return .end(entries: n, checkpoints: c)
        default:
            throw bad("unknown record '\(f.first.map { $0.prefix(40) } ?? "")'")
        }
    }
}

extension LedgerAudit {
    /// Writes the whole ledger (one consistent snapshot) in ``LedgerExportFormat`` to `output`.
    /// - Returns: the number of entries and checkpoints written.
    public static func export(database: DatabaseSettings, role: DatabaseRole = .reader, to output: FileHandle,
                              timeout: Duration = .seconds(60), logger: Logger,
                              progress: @Sendable (UInt64, UInt64) -> Void = { _, _ in }) async throws -> (entries: UInt64, checkpoints: Int) {
        let connection = try await Database.connect(database, role, timeout: timeout, logger: logger)
        defer { Task { [connection] in try? await connection.close() } }
        do {
            let (total, checkpoints) = try await beginSnapshot(connection, timeout: timeout, logger: logger)
            var buffer = LedgerExportFormat.header + "\n"
            var cpIndex = 0
            func flushCheckpoints(upTo size: UInt64) {
                while cpIndex < checkpoints.count, checkpoints[cpIndex].treeSize <= size {
                    buffer += LedgerExportFormat.line(checkpoints[cpIndex])
                    cpIndex += 1
                }
            }
            flushCheckpoints(upTo: 0)
            var next: Int64 = 0
            var written: UInt64 = 0
            while true {
                let entries = try await fetchEntries(connection, from: next, timeout: timeout, logger: logger)
                for e in entries {
                    buffer += LedgerExportFormat.line(e)
                    flushCheckpoints(upTo: e.index + 1)
                    next = Int64(e.index) + 1
                    written += 1
                }
                try output.write(contentsOf: Data(buffer.utf8))
                buffer = ""
                progress(written, UInt64(max(total, 0)))
                if entries.isEmpty { break }
            }
            flushCheckpoints(upTo: UInt64.max)
            buffer += "end \(written) \(checkpoints.count)\n"
            try output.write(contentsOf: Data(buffer.utf8))
            try await connection.within(timeout, "ending the snapshot") { c in _ = try await c.query("COMMIT", logger: logger) }
            return (written, checkpoints.count)
        } catch {
            throw Database.map(error, "exporting the ledger")
        }
    }

    /// Verifies an export file (``LedgerExportFormat``) offline, streaming it; `given` as for
    /// ``verifyDatabase(database:role:trustedKeys:origin:given:timeout:logger:progress:)``.
    /// - Throws: ``LedgerError`` `invalidArgument` when the file cannot be read or parsed.
    public static func verifyFile(path: String, trustedKeys: TrustedKeys, origin: String?, given: [StoredCheckpoint] = [],
                                  maxLineBytes: Int = LedgerExportFormat.maxLineBytes,
                                  progress: @Sendable (UInt64, UInt64) -> Void = { _, _ in }) throws -> VerificationReport {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw LedgerError(.invalidArgument, "cannot open \(path)")
        }
        defer { try? handle.close() }
        let fileSize = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64) ?? 0
        var verifier = LedgerVerifier(trustedKeys: trustedKeys, origin: origin)
        for cp in given { verifier.add(checkpoint: cp) }
        var batch: [StoredEntry] = []
        var lineNumber = 0
        var sawHeader = false
        var end: (UInt64, Int)?
        var read: UInt64 = 0
        var checkpointsSeen = 0
        func flush() {
            if !batch.isEmpty {
                verifier.add(entries: batch)
                batch.removeAll(keepingCapacity: true)
            }
        }
        func handleLine(_ lineBytes: ArraySlice<UInt8>) throws {
            lineNumber += 1
            let line = Substring(String(decoding: lineBytes, as: UTF8.self))
            if !sawHeader {
                guard line == LedgerExportFormat.header else { throw LedgerError(.invalidArgument, "\(path): not a ledger export (line 1)") }
                sawHeader = true
                return
            }
            guard end == nil else { throw LedgerError(.invalidArgument, "\(path):\(lineNumber): data after the end line") }
            do {
                switch try LedgerExportFormat.parse(line: line) {
                case .entry(let e):
                    batch.append(e)
                    if batch.count >= 8192 { flush() }
                case .checkpoint(let c):
                    flush()
                    checkpointsSeen += 1
                    verifier.add(checkpoint: c)
                case .end(let n, let c):
                    end = (n, c)
                }
            } catch let e as LedgerError {
                throw LedgerError(.invalidArgument, "\(path):\(lineNumber): \(e.message)")
            }
        }
        // The bytes read and not yet in a complete line. Each chunk is searched once for newlines
        // (a line spanning chunks is not scanned again), and what is left is moved to the front.
        var pending: [UInt8] = []
        while verifier.problem == nil {
            guard let chunk = try handle.read(upToCount: 4 << 20), !chunk.isEmpty else { break }
            read += UInt64(chunk.count)
            var scanned = pending.count
            pending.append(contentsOf: chunk)
            var start = 0
            while verifier.problem == nil, let nl = pending[scanned...].firstIndex(of: 0x0A) {
                try handleLine(pending[start..<nl])
                start = nl + 1
                scanned = start
            }
            pending.removeFirst(start)
            guard pending.count <= maxLineBytes else {
                throw LedgerError(.invalidArgument, "\(path):\(lineNumber + 1): a line longer than \(maxLineBytes) bytes: not a ledger export")
            }
            progress(read, fileSize)
        }
        flush()
        if verifier.problem == nil {
            guard pending.isEmpty else { throw LedgerError(.invalidArgument, "\(path): the last line has no newline (a truncated file?)") }
            guard sawHeader else { throw LedgerError(.invalidArgument, "\(path): empty: not a ledger export") }
            guard let end else {
                return LedgerAudit.report(verifier, problem: LedgerProblem(index: verifier.size, message: "the export has no end line (truncated file)"))
            }
            guard end.0 == verifier.size, end.1 == checkpointsSeen else {
                return LedgerAudit.report(verifier, problem: LedgerProblem(index: verifier.size, message: "the end line counts \(end.0) entries and \(end.1) checkpoints; the file has \(verifier.size) and \(checkpointsSeen)"))
            }
            verifier.finish()
        }
        return LedgerAudit.report(verifier, problem: verifier.problem)
    }
}
