import CountersignConfig
import Foundation
import Logging
import NIOCore
import PostgresNIO

/// Which login of ``DatabaseSettings`` to use.
public enum DatabaseRole: String, Sendable, Hashable {
    /// Runs migrations (`database.owner`).
    case owner
    /// INSERT and SELECT, UPDATE of the lease row (`database.writer`): the server.
    case writer
    /// SELECT only (`database.reader`): auditors and `ledger verify`.
    case reader
}

enum Database {
    /// The login for `role`.
    static func credentials(_ settings: DatabaseSettings, _ role: DatabaseRole) throws -> (user: String, password: String) {
        let creds: DatabaseCredentials
        switch role {
        case .owner:
            guard let o = settings.owner else { throw LedgerError(.invalidArgument, "database.owner is not configured") }
            creds = o
        case .writer:
            creds = settings.writer
        case .reader:
            guard let r = settings.reader else { throw LedgerError(.invalidArgument, "database.reader is not configured") }
            creds = r
        }
        do {
            return (creds.user, try creds.password.read())
        } catch {
            throw LedgerError(.invalidArgument, "cannot read the \(role.rawValue) password from \(creds.password)", cause: error)
        }
    }

    static func connectionConfiguration(_ settings: DatabaseSettings, _ role: DatabaseRole, connectTimeout: Duration) throws -> PostgresConnection.Configuration {
        let (user, password) = try credentials(settings, role)
        var config: PostgresConnection.Configuration
        switch settings.endpoint {
        case .unixSocket:
            config = .init(unixSocketPath: settings.socketPath!, username: user, password: password, database: settings.database)
        case .tcp(let host, let port):
            config = .init(host: host, port: port, username: user, password: password, database: settings.database, tls: .disable)
        }
        config.options.connectTimeout = .milliseconds(Int64(connectTimeout.milliseconds))
        config.options.additionalStartupParameters = sessionSettings(statementTimeout: connectTimeout * 2)
        return config
    }

    /// The session's settings, sent with the startup message (PostgreSQL takes any setting there),
    /// so that a new connection needs no round trip of its own for them: its name in
    /// `pg_stat_activity`, synchronous commit on (an appended entry is on disk before its caller
    /// hears of it), and a server-side statement timeout.
    static func sessionSettings(statementTimeout: Duration) -> [(String, String)] {
        [("application_name", "countersign-ledger"), ("synchronous_commit", "on"),
         ("statement_timeout", "\(statementTimeout.milliseconds)")]
    }

    static func clientConfiguration(_ settings: DatabaseSettings, _ role: DatabaseRole, connectTimeout: Duration, maxConnections: Int) throws -> PostgresClient.Configuration {
        let (user, password) = try credentials(settings, role)
        var config: PostgresClient.Configuration
        switch settings.endpoint {
        case .unixSocket:
            config = .init(unixSocketPath: settings.socketPath!, username: user, password: password, database: settings.database)
        case .tcp(let host, let port):
            config = .init(host: host, port: port, username: user, password: password, database: settings.database, tls: .disable)
        }
        config.options.connectTimeout = connectTimeout
        config.options.maximumConnections = maxConnections
        config.options.additionalStartupParameters = sessionSettings(statementTimeout: connectTimeout * 2)
        return config
    }

    /// Opens one connection, with a timeout that covers authentication, and the settings of
    /// ``sessionSettings(statementTimeout:)``.
    static func connect(_ settings: DatabaseSettings, _ role: DatabaseRole, timeout: Duration, logger: Logger,
                        on eventLoop: (any EventLoop)? = nil) async throws -> PostgresConnection {
        let config = try connectionConfiguration(settings, role, connectTimeout: timeout)
        do {
            let loop = eventLoop ?? PostgresConnection.defaultEventLoopGroup.any()
            return try await PostgresConnection.connect(on: loop, configuration: config, id: nextID(), logger: logger)
        } catch {
            throw map(error, "cannot connect to the ledger database \(settings.database) at \(settings.address) as \(role.rawValue)")
        }
    }

    private static let counter = Counter()
    static func nextID() -> Int { counter.next() }

    /// Maps a PostgreSQL or connection error to a ``LedgerError``.
    static func map(_ error: any Error, _ context: String, file: String = #fileID, line: Int = #line) -> LedgerError {
        if let e = error as? LedgerError { return e }
        if let p = error as? PSQLError, let state = p.serverInfo?[.sqlState] {
            return map(sqlState: state, message: p.serverInfo?[.message] ?? "", constraint: p.serverInfo?[.constraintName],
                       context, cause: error, file: file, line: line)
        }
        // A connection that could not be made says why (no such socket, refused, timed out):
        // PostgresNIO's own description of the error leaves that out.
        if let p = error as? PSQLError, let underlying = p.underlying {
            return LedgerError(.unavailable, "\(context): database unavailable: \(underlying)", cause: error, file: file, line: line)
        }
        return LedgerError(.unavailable, "\(context): database unavailable", cause: error, file: file, line: line)
    }

    /// Maps an error that PostgreSQL reported (its SQLSTATE, message and constraint name, from
    /// PostgresNIO or libpq) to a ``LedgerError``: the one mapping of server errors in the ledger.
    static func map(sqlState state: String, message msg: String, constraint: String?, _ context: String, cause: (any Error)? = nil,
                    file: String = #fileID, line: Int = #line) -> LedgerError {
        switch state {
        case "CS001", "CS002":
            return LedgerError(.staleEpoch, "\(context): \(msg)", cause: cause, file: file, line: line)
        case "23505" where constraint == Schema.oneDecisionPerRequest:
            return LedgerError(.exists, "\(context): the ledger already holds a decision for this request id", cause: cause, file: file, line: line)
        case "CS003", "23505":
            return LedgerError(.conflict, "\(context): another writer appended at the same time", cause: cause, file: file, line: line)
        case "42P01", "42883":
            return LedgerError(.schema, "\(context): the ledger schema is missing; run `countersign ledger migrate`", cause: cause, file: file, line: line)
        case "57014":
            return LedgerError(.unavailable, "\(context): the database statement timed out", cause: cause, file: file, line: line)
        case "42501":
            return LedgerError(.invalidArgument, "\(context): permission denied: \(msg)", cause: cause, file: file, line: line)
        case _ where state.hasPrefix("28"):
            // Invalid authorization (a wrong password, a role that may not log in): the server's
            // words name the role; the fix is in the configuration's database section.
            return LedgerError(.unavailable, "\(context): the database refused the login (\(state)): \(msg); check that role's password_file",
                               cause: cause, file: file, line: line)
        default:
            let detail = msg.isEmpty ? "" : ": \(msg)"
            if state.hasPrefix("08") || state.hasPrefix("53") || state.hasPrefix("57") || state.hasPrefix("58") {
                return LedgerError(.unavailable, "\(context): database unavailable (\(state))\(detail)", cause: cause, file: file, line: line)
            }
            return LedgerError(.unavailable, "\(context): database error \(state)\(detail)", cause: cause, file: file, line: line)
        }
    }
}

/// A flag set once, read from any thread.
final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() {
        lock.lock()
        value = true
        lock.unlock()
    }
    var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return value
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func next() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value += 1
        return value
    }
}

extension Duration {
    var milliseconds: Int64 {
        let (s, atto) = components
        return s * 1000 + atto / 1_000_000_000_000_000
    }
}

/// Runs `operation` in a task of its own and returns its outcome, unless the deadline
/// (`start + timeout`) passes first: then `onTimeout` runs (it closes the connection, so that the
/// operation fails and lets go of what it holds) and this throws `unavailable` at once.
///
/// It never waits for the operation after the deadline, and that is the point. A query written to
/// a PostgresNIO connection whose channel has just closed never completes: the channel's handlers
/// are already gone from its pipeline, so nothing fails the query's promise (postgres-nio's fix,
/// #487, was reverted in #501), and closing the closed connection again does nothing. A deadline
/// that waited for the operation to end waited with it, for ever: the ledger writer stopped on a
/// database restart, and the node with it.
///
/// With `deadlines`, the ledger's reaper checks the deadline (arming it costs a lock); without,
/// a timer task does. The operation's task starts on the caller's thread (`Task.immediate`) and
/// runs there up to its first suspension, normally its first write to the database, instead of
/// waiting for a thread of Swift's executor: measured here, a lone writer's appends 0.26–0.27 →
/// 0.28–0.32 of pgbench's commits, eight writers' 0.49–0.56 → 0.53–0.60.
func bounded<T: Sendable>(
    _ what: String, timeout: Duration, from start: ContinuousClock.Instant = .now, deadlines: Deadlines? = nil,
    onTimeout: @escaping @Sendable () -> Void = {},
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let race = Race<T>()
    let task = Task.immediate {
        do {
            race.finish(.success(try await operation()))
        } catch {
            race.finish(.failure(error))
        }
    }
    let expire: @Sendable () -> Void = {
        if race.finish(.failure(LedgerError.unavailable("\(what): no answer from the database within \(timeout)"))) {
            onTimeout()
            task.cancel()
        }
    }
    let armed = deadlines?.arm(start + timeout, expire)
    let timer = deadlines == nil ? Task {
        try? await Task.sleep(until: start + timeout, clock: .continuous)
        if !Task.isCancelled { expire() }
    } : nil
    defer {
        if let armed { deadlines?.disarm(armed) }
        timer?.cancel()
    }
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { race.start($0) }
    } onCancel: {
        if race.finish(.failure(LedgerError.unavailable("\(what): cancelled"))) { task.cancel() }
    }
}

/// The deadlines of the reads in flight, checked by one reaper (``run(every:)``, in ``Ledger/run()``)
/// rather than a timer or a task per read: arming one costs a lock, so a proof pays nothing for it.
/// A deadline fires within one tick after it passes.
final class Deadlines: @unchecked Sendable {
    private let lock = NSLock()
    private var nextID = 0
    private var armed: [Int: (deadline: ContinuousClock.Instant, fire: @Sendable () -> Void)] = [:]

    /// Arms `fire` for `deadline`; returns the id to ``disarm(_:)`` it.
    func arm(_ deadline: ContinuousClock.Instant, _ fire: @escaping @Sendable () -> Void) -> Int {
        lock.lock()
        defer { lock.unlock() }
        nextID += 1
        armed[nextID] = (deadline, fire)
        return nextID
    }

    func disarm(_ id: Int) {
        lock.lock()
        armed[id] = nil
        lock.unlock()
    }

    /// Fires (and disarms) every deadline that has passed.
    func fireExpired(now: ContinuousClock.Instant = .now) {
        lock.lock()
        var due: [@Sendable () -> Void] = []
        if !armed.isEmpty {
            for (id, d) in armed where d.deadline <= now {
                due.append(d.fire)
                armed[id] = nil
            }
        }
        lock.unlock()
        for f in due { f() }
    }

    /// Checks every `tick` until the task is cancelled.
    func run(every tick: Duration) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: tick)
            fireExpired()
        }
    }
}

/// The outcome of an operation that a deadline may end first: the first ``finish(_:)`` decides
/// it and resumes the waiting caller (at once, or as soon as it waits); later ones do nothing.
final class Race<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, any Error>?
    private var outcome: Result<T, any Error>?

    /// The caller waits here.
    func start(_ c: CheckedContinuation<T, any Error>) {
        lock.lock()
        if let outcome {
            lock.unlock()
            c.resume(with: outcome)
            return
        }
        continuation = c
        lock.unlock()
    }

    /// Decides the race unless it is decided; returns whether this call decided it.
    @discardableResult
    func finish(_ result: Result<T, any Error>) -> Bool {
        lock.lock()
        guard outcome == nil else {
            lock.unlock()
            return false
        }
        outcome = result
        let c = continuation
        continuation = nil
        lock.unlock()
        c?.resume(with: result)
        return true
    }
}

extension ByteBuffer {
    var bytes: [UInt8] { Array(readableBytesView) }
}

extension PostgresConnection {
    /// Runs `body` on this connection under ``bounded(_:timeout:from:deadlines:onTimeout:_:)``:
    /// at the deadline the connection is closed and `unavailable` thrown, whether or not the
    /// queries in `body` ever answer. For the long reads of auditors, one bounded step at a time.
    func within<T: Sendable>(_ timeout: Duration, _ what: String,
                             _ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await bounded(what, timeout: timeout, onTimeout: { self.closeNow() }) { try await body(self) }
    }

    /// Returns once the statement this connection ran last has committed, or throws.
    ///
    /// PostgresNIO ends a query at its CommandComplete, but in the extended query protocol an
    /// implicit transaction commits later, at the Sync that follows (PostgreSQL's
    /// `finish_xact_command`): a backend killed in between, or a deferred check that fails at
    /// commit, rolls back a write whose query had already "succeeded". PostgresNIO sends a
    /// connection's next query only after the ReadyForQuery that ends the last one, and closes the
    /// connection on an error that arrives after CommandComplete, so a round trip that succeeds
    /// proves the commit. The lease and checkpoint writes end with this (``Ledger/write(_:_:)``);
    /// the writer's appends are on libpq, whose answer comes after the commit (``WriterConnection``).
    func confirmCommitted(logger: Logger) async throws {
        for try await _ in try await execute(CommitConfirmation(), logger: logger) {}
    }

    /// Closes the connection without waiting (fails whatever is in flight on it). The connection
    /// lives until it has closed, even when nothing else holds it any more.
    func closeNow() {
        let future: EventLoopFuture<Void> = self.close()
        future.whenComplete { _ in withExtendedLifetime(self) {} }
    }
}

/// The round trip of ``PostgresConnection/confirmCommitted(logger:)``: prepared once per connection.
struct CommitConfirmation: PostgresPreparedStatement {
    static let sql = "SELECT 1"
    typealias Row = Int32

    func makeBindings() throws -> PostgresBindings { PostgresBindings() }
    func decodeRow(_ row: PostgresRow) throws -> Int32 { try row.decode(Int32.self) }
}
