import CLibPQ
import CountersignConfig
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The ledger writer's connection: libpq, PostgreSQL's own client, driven from the writer's
/// thread (``BatchWriter``), one statement at a time, every wait bounded by a deadline.
///
/// Why not PostgresNIO, which every other database access uses: an append is the one operation
/// whose answer must mean "committed". libpq reports a statement's outcome only after the
/// ReadyForQuery that ends it, and in the extended query protocol the implicit transaction commits
/// before that (PostgreSQL's `finish_xact_command`, at the Sync): so a successful ``execute(_:_:what:timeout:deadline:)``
/// is a committed append, and an error at commit (a deferred check, a backend killed after the
/// CommandComplete) comes back as the statement's error. PostgresNIO ends a query at its
/// CommandComplete, which took a second round trip per batch to confirm the commit; and each of
/// its round trips costs two thread wake-ups (the caller's thread to the event loop and back),
/// where a blocking wait on a thread of its own costs one, as pgbench's. Measured in
/// `docs/ledger.md` ("The writer on libpq").
///
/// Not thread-safe: one thread (the writer's) owns it.
final class WriterConnection {
    /// A statement prepared once per connection, by name.
    struct Prepared: Sendable {
        var name: String
        var sql: String
    }

    private var conn: OpaquePointer?
    private var prepared: Set<String> = []

    private init(_ conn: OpaquePointer) {
        self.conn = conn
    }

    deinit { close() }

    /// Whether the connection can take a statement (not closed, not broken).
    var isOpen: Bool {
        guard let conn else { return false }
        return PQstatus(conn) == CONNECTION_OK
    }

    /// Closes the connection (a Terminate message, then the socket); does nothing when closed.
    func close() {
        if let conn { PQfinish(conn) }
        conn = nil
        prepared = []
    }

    /// Opens a connection as the writer role, with the session settings every ledger connection
    /// has (``Database/sessionSettings(statementTimeout:)``: synchronous commit on, a statement
    /// timeout), before `deadline`.
    static func open(_ settings: DatabaseSettings, timeout: Duration, deadline: ContinuousClock.Instant) throws -> WriterConnection {
        let (user, password) = try Database.credentials(settings, .writer)
        var parameters: [(String, String)] = [("user", user), ("password", password), ("dbname", settings.database),
                                              ("client_encoding", "UTF8"), ("gssencmode", "disable")]
        switch settings.endpoint {
        case .unixSocket(let directory, let port):
            parameters += [("host", directory), ("port", "\(port)")]
        case .tcp(let host, let port):
            // As the PostgresNIO connections of the ledger (`tls: .disable`).
            parameters += [("host", host), ("port", "\(port)"), ("sslmode", "disable")]
        }
        var options: [String] = []
        for (name, value) in Database.sessionSettings(statementTimeout: timeout * 2) {
            if name == "application_name" {
                parameters.append((name, value))
            } else {
                options.append("-c \(name)=\(value)")
            }
        }
        // The writer's statements (the append, the right edge's subtrees) have nothing in their
        // parameters that could change a plan: plan them once, not per call. Alternating runs of
        // `ledger bench`: a lone writer 2,814–2,821 → 2,881–2,904 entries/s, eight writers
        // 16,632–16,857 → 17,256–17,508.
        options.append("-c plan_cache_mode=force_generic_plan")
        parameters.append(("options", options.joined(separator: " ")))

        let keywords = parameters.map { strdup($0.0) }
        let values = parameters.map { strdup($0.1) }
        defer {
            for p in keywords { free(p) }
            for p in values { free(p) }
        }
        let k = keywords.map { UnsafePointer($0) } + [nil]
        let v = values.map { UnsafePointer($0) } + [nil]
        guard let conn = PQconnectStartParams(k, v, 0) else {
            throw LedgerError.unavailable("cannot connect to the ledger database as writer: out of memory")
        }
        let connection = WriterConnection(conn)
        let what = "cannot connect to the ledger database as writer"
        guard PQstatus(conn) != CONNECTION_BAD else {
            let message = connection.lastError
            connection.close()
            throw LedgerError.unavailable("\(what): \(message)")
        }
        do {
            var status = PGRES_POLLING_WRITING
            while true {
                switch status {
                case PGRES_POLLING_OK:
                    guard PQsetnonblocking(conn, 1) == 0 else {
                        throw LedgerError.unavailable("\(what): \(connection.lastError)")
                    }
                    return connection
                case PGRES_POLLING_READING:
                    try connection.wait(forWrite: false, until: deadline, what, timeout)
                case PGRES_POLLING_WRITING:
                    try connection.wait(forWrite: true, until: deadline, what, timeout)
                default:
                    throw LedgerError.unavailable("\(what): \(connection.lastError)")
                }
                status = PQconnectPoll(conn)
            }
        } catch {
            connection.close()
            throw error
        }
    }

    /// Runs a prepared statement (preparing it first on this connection) with binary parameters and
    /// binary results; returns its rows once PostgreSQL has said ReadyForQuery, that is, for a
    /// write, once it has committed.
    /// - Throws: ``LedgerError``: the server's error (``Database/map(sqlState:message:constraint:_:cause:file:line:)``),
    ///   or `unavailable` when the connection breaks or `deadline` passes (then the connection is
    ///   closed: nothing more is read from it).
    func execute(_ statement: Prepared, _ parameters: [[UInt8]], what: String, timeout: Duration,
                 deadline: ContinuousClock.Instant) throws -> [[[UInt8]?]] {
        try run(what) { conn in
            if !prepared.contains(statement.name) {
                guard PQsendPrepare(conn, statement.name, statement.sql, Int32(parameters.count), nil) == 1 else {
                    throw LedgerError.unavailable("\(what): \(lastError)")
                }
                _ = try results(what, timeout, deadline)
                prepared.insert(statement.name)
            }
            try send(statement.name, parameters, what)
            return try results(what, timeout, deadline)
        }
    }

    /// Runs a statement that is not prepared (a one-off read), with binary results.
    func query(_ sql: String, what: String, timeout: Duration, deadline: ContinuousClock.Instant) throws -> [[[UInt8]?]] {
        try run(what) { conn in
            guard PQsendQueryParams(conn, sql, 0, nil, nil, nil, nil, 1) == 1 else {
                throw LedgerError.unavailable("\(what): \(lastError)")
            }
            return try results(what, timeout, deadline)
        }
    }

    /// Runs `body` on the open connection; closes the connection when it fails with `unavailable`
    /// (broken, or the deadline passed mid-statement: nothing more may be read from it).
    private func run(_ what: String, _ body: (OpaquePointer) throws -> [[[UInt8]?]]) throws -> [[[UInt8]?]] {
        guard let conn, PQstatus(conn) == CONNECTION_OK else { throw LedgerError.unavailable("\(what): the connection is closed") }
        do {
            return try body(conn)
        } catch let e as LedgerError where e.code == .unavailable {
            close()
            throw e
        }
    }

    // MARK: the protocol

    private func send(_ name: String, _ parameters: [[UInt8]], _ what: String) throws {
        // One buffer for all values, so that their pointers stay valid for the call.
        var offsets: [Int] = []
        var lengths: [Int32] = []
        offsets.reserveCapacity(parameters.count)
        lengths.reserveCapacity(parameters.count)
        var blob: [UInt8] = []
        blob.reserveCapacity(parameters.reduce(1) { $0 + $1.count })
        for p in parameters {
            offsets.append(blob.count)
            lengths.append(Int32(p.count))
            blob.append(contentsOf: p)
        }
        blob.append(0)
        let formats = [Int32](repeating: 1, count: parameters.count)
        let sent = blob.withUnsafeBufferPointer { base -> Int32 in
            let raw = UnsafeRawPointer(base.baseAddress!)
            let values: [UnsafePointer<CChar>?] = offsets.map { (raw + $0).assumingMemoryBound(to: CChar.self) }
            return PQsendQueryPrepared(conn, name, Int32(parameters.count), values, lengths, formats, 1)
        }
        guard sent == 1 else { throw LedgerError.unavailable("\(what): \(lastError)") }
    }

    /// Flushes what libpq holds, then reads results until the statement's ReadyForQuery. The first
    /// error reported wins; the rows are those of the last result.
    private func results(_ what: String, _ timeout: Duration, _ deadline: ContinuousClock.Instant) throws -> [[[UInt8]?]] {
        guard let conn else { throw LedgerError.unavailable("\(what): the connection is closed") }
        while true {
            let flushed = PQflush(conn)
            if flushed == 0 { break }
            guard flushed > 0 else { throw LedgerError.unavailable("\(what): \(lastError)") }
            try wait(forWrite: true, until: deadline, what, timeout)
        }
        var rows: [[[UInt8]?]] = []
        var failure: LedgerError?
        while true {
            while PQisBusy(conn) == 1 {
                try wait(forWrite: false, until: deadline, what, timeout)
                guard PQconsumeInput(conn) == 1 else { throw LedgerError.unavailable("\(what): \(lastError)") }
            }
            guard let result = PQgetResult(conn) else { break }
            defer { PQclear(result) }
            switch PQresultStatus(result) {
            case PGRES_TUPLES_OK, PGRES_COMMAND_OK:
                rows = Self.rows(result)
            default:
                if failure == nil { failure = error(result, what) }
            }
        }
        if let failure { throw failure }
        guard PQstatus(conn) == CONNECTION_OK else { throw LedgerError.unavailable("\(what): \(lastError)") }
        return rows
    }

    private static func rows(_ result: OpaquePointer) -> [[[UInt8]?]] {
        let n = PQntuples(result), fields = PQnfields(result)
        var rows: [[[UInt8]?]] = []
        rows.reserveCapacity(Int(n))
        for r in 0..<n {
            var row: [[UInt8]?] = []
            row.reserveCapacity(Int(fields))
            for f in 0..<fields {
                if PQgetisnull(result, r, f) == 1 {
                    row.append(nil)
                } else {
                    let length = Int(PQgetlength(result, r, f))
                    let value = PQgetvalue(result, r, f)!
                    row.append(value.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) })
                }
            }
            rows.append(row)
        }
        return rows
    }

    /// The server's error, mapped; an error without a SQLSTATE is libpq's own (the connection).
    private func error(_ result: OpaquePointer, _ what: String) -> LedgerError {
        func field(_ code: Character) -> String? {
            PQresultErrorField(result, Int32(code.asciiValue!)).map { String(cString: $0) }
        }
        guard let state = field("C") else {
            let message = String(cString: PQresultErrorMessage(result)).trimmingCharacters(in: .whitespacesAndNewlines)
            return LedgerError.unavailable("\(what): \(message.isEmpty ? lastError : message)")
        }
        return Database.map(sqlState: state, message: field("M") ?? "", constraint: field("n"), what)
    }

    private var lastError: String {
        guard let conn, let m = PQerrorMessage(conn) else { return "connection closed" }
        let s = String(cString: m).trimmingCharacters(in: .whitespacesAndNewlines)
        return s.isEmpty ? "connection closed" : s
    }

    /// Waits until the socket is readable (or writable), or throws `unavailable` once `deadline`
    /// has passed. A spurious or early return is fine: the callers loop.
    private func wait(forWrite: Bool, until deadline: ContinuousClock.Instant, _ what: String, _ timeout: Duration) throws {
        guard let conn else { throw LedgerError.unavailable("\(what): the connection is closed") }
        let fd = PQsocket(conn)
        guard fd >= 0 else { throw LedgerError.unavailable("\(what): \(lastError)") }
        let remaining = deadline - .now
        guard remaining > .zero else {
            throw LedgerError.unavailable("\(what): no answer from the database within \(timeout)")
        }
        var p = pollfd(fd: fd, events: Int16(forWrite ? POLLIN | POLLOUT : POLLIN), revents: 0)
        let ms = Int32(clamping: remaining.milliseconds + 1)
        if poll(&p, 1, ms) < 0 && errno != EINTR {
            throw LedgerError.unavailable("\(what): poll failed (errno \(errno))")
        }
    }
}

/// Values in PostgreSQL's binary format, for the writer's parameters and results.
enum PGBinary {
    /// Type OIDs (`pg_type`).
    static let int2: UInt32 = 21, int8: UInt32 = 20, text: UInt32 = 25, bytea: UInt32 = 17

    static func int8(_ v: Int64) -> [UInt8] {
        withUnsafeBytes(of: v.bigEndian) { Array($0) }
    }

    /// An `int8` result value.
    static func decodeInt8(_ bytes: [UInt8]?) -> Int64? {
        guard let bytes, bytes.count == 8 else { return nil }
        return bytes.reduce(Int64(0)) { $0 << 8 | Int64($1) }
    }

    /// A one-dimensional array without NULLs, built element by element.
    struct Array1D {
        private(set) var count = 0
        private var body: [UInt8] = []
        let oid: UInt32

        init(oid: UInt32, capacity: Int = 0) {
            self.oid = oid
            body.reserveCapacity(capacity)
        }

        mutating func append<C: Collection>(_ element: C) where C.Element == UInt8 {
            Self.put(Int32(element.count), &body)
            body.append(contentsOf: element)
            count += 1
        }

        mutating func append(_ s: String) { append(s.utf8) }
        mutating func append(int8 v: Int64) { append(PGBinary.int8(v)) }
        mutating func append(int2 v: Int16) { append(withUnsafeBytes(of: v.bigEndian) { Array($0) }) }

        /// The wire form: dimensions (0 for an empty array), no-NULLs flag, element type, then
        /// each dimension's length and lower bound (1), then the elements.
        var bytes: [UInt8] {
            var out: [UInt8] = []
            out.reserveCapacity(20 + body.count)
            Self.put(count == 0 ? 0 : 1, &out)
            Self.put(0, &out)
            Self.put(Int32(bitPattern: oid), &out)
            if count > 0 {
                Self.put(Int32(count), &out)
                Self.put(1, &out)
            }
            out.append(contentsOf: body)
            return out
        }

        private static func put(_ v: Int32, _ out: inout [UInt8]) {
            withUnsafeBytes(of: v.bigEndian) { out.append(contentsOf: $0) }
        }
    }
}
