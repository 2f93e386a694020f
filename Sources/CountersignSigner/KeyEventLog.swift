public import CountersignVerify
import Foundation

/// Where key-event statements are kept, in order. The keyring is what folding them gives.
///
/// The ledger implements this with entries of kind `key-event`; ``FileKeyEventLog`` is the
/// durable stand-in used by the tests and the command line until then.
public protocol KeyEventLog: Sendable {
    /// Appends one signed key-event statement durably (it is on disk or committed when this returns).
    func append(_ statement: SignedStatement) async throws
    /// Every statement appended so far, oldest first.
    func readAll() async throws -> [SignedStatement]
}

/// An append-only file of key-event statements, one JSON object per line
/// (`{"payload_type":…,"payload":base64,"signature":base64,"key_id":…}`), `fsync`ed on every append.
///
/// A last line without its newline (a write torn by a crash) is ignored when reading; any other
/// unreadable line is an error. One writer process at a time (appends are `O_APPEND` writes of one
/// line each).
public final class FileKeyEventLog: KeyEventLog, @unchecked Sendable {
    public let path: String
    private let lock = NSLock()

    private struct Line: Codable {
        var payload_type: String
        var payload: String
        var signature: String
        var key_id: String
    }

    /// - Parameter path: the file; created (mode 0600) on the first append.
    public init(path: String) {
        self.path = path
    }

    public func append(_ statement: SignedStatement) async throws {
        try appendSync(statement)
    }

    public func readAll() async throws -> [SignedStatement] {
        try readAllSync()
    }

    private func appendSync(_ statement: SignedStatement) throws {
        let line = Line(payload_type: statement.payloadType, payload: Data(statement.payload).base64EncodedString(),
                        signature: Data(statement.signature).base64EncodedString(), key_id: statement.keyID)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var data = try encoder.encode(line)
        data.append(0x0A)
        lock.lock()
        defer { lock.unlock() }
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw SignerError(.keyEventLog, "cannot open the key-event log \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == data.count, fsync(fd) == 0 else {
            throw SignerError(.keyEventLog, "cannot write the key-event log \(path): \(String(cString: strerror(errno)))")
        }
    }

    private func readAllSync() throws -> [SignedStatement] {
        lock.lock()
        defer { lock.unlock() }
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SignerError(.keyEventLog, "cannot read the key-event log \(path)")
        }
        var out: [SignedStatement] = []
        let lines = data.split(separator: 0x0A, omittingEmptySubsequences: false)
        let decoder = JSONDecoder()
        for (number, raw) in lines.enumerated() {
            if raw.isEmpty { continue }
            if number == lines.count - 1 { break }  // no newline after it: a torn write
            guard let line = try? decoder.decode(Line.self, from: Data(raw)),
                  let payload = Data(base64Encoded: line.payload), let signature = Data(base64Encoded: line.signature) else {
                throw SignerError(.keyEventLog, "key-event log \(path) line \(number + 1) is unreadable")
            }
            out.append(SignedStatement(payloadType: line.payload_type, payload: Array(payload), signature: Array(signature), keyID: line.key_id))
        }
        return out
    }
}

/// A key-event log in memory (tests, and a server that has not connected its ledger yet).
public actor InMemoryKeyEventLog: KeyEventLog {
    private var statements: [SignedStatement] = []
    public init() {}
    public func append(_ statement: SignedStatement) { statements.append(statement) }
    public func readAll() -> [SignedStatement] { statements }
}
