public import CountersignConfig
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
        config.options.additionalStartupParameters = [("application_name", "countersign-ledger")]
        return config
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
        config.options.additionalStartupParameters = [("application_name", "countersign-ledger")]
        return config
    }

    /// Opens one connection, with a timeout, and sets the session up: synchronous commit on and
    /// a server-side statement timeout.
    static func connect(_ settings: DatabaseSettings, _ role: DatabaseRole, timeout: Duration, logger: Logger,
                        on eventLoop: (any EventLoop)? = nil) async throws -> PostgresConnection {
        let config = try connectionConfiguration(settings, role, connectTimeout: timeout)
        do {
            let loop = eventLoop ?? PostgresConnection.defaultEventLoopGroup.any()
            let connection = try await PostgresConnection.connect(on: loop, configuration: config, id: nextID(), logger: logger)
            let ms = timeout.milliseconds * 2
            try await connection.query("SET synchronous_commit TO on", logger: logger)
            try await connection.query(PostgresQuery(unsafeSQL: "SET statement_timeout TO \(ms)"), logger: logger)
            return connection
        } catch {
            throw map(error, "cannot connect to the ledger database as \(role.rawValue)")
        }
    }

    private static let counter = Counter()
    static func nextID() -> Int { counter.next() }

    /// Maps a PostgreSQL or connection error to a ``LedgerError``.
    static func map(_ error: any Error, _ context: String, file: String = #fileID, line: Int = #line) -> LedgerError {
        if let e = error as? LedgerError { return e }
        if let p = error as? PSQLError {
            if let state = p.serverInfo?[.sqlState] {
                let msg = p.serverInfo?[.message] ?? ""
                switch state {
                case "CS001", "CS002":
                    return LedgerError(.staleEpoch, "\(context): \(msg)", cause: error, file: file, line: line)
                case "23505" where p.serverInfo?[.constraintName] == Schema.oneDecisionPerRequest:
                    return LedgerError(.exists, "\(context): the ledger already holds a decision for this request id", cause: error, file: file, line: line)
                case "CS003", "23505":
                    return LedgerError(.conflict, "\(context): another writer appended at the same time", cause: error, file: file, line: line)
                case "42P01", "42883":
                    return LedgerError(.schema, "\(context): the ledger schema is missing; run `countersign ledger migrate`", cause: error, file: file, line: line)
                case "57014":
                    return LedgerError(.unavailable, "\(context): the database statement timed out", cause: error, file: file, line: line)
                case "42501":
                    return LedgerError(.invalidArgument, "\(context): permission denied: \(msg)", cause: error, file: file, line: line)
                default:
                    if state.hasPrefix("08") || state.hasPrefix("53") || state.hasPrefix("57") || state.hasPrefix("58") {
                        return LedgerError(.unavailable, "\(context): database unavailable (\(state))", cause: error, file: file, line: line)
                    }
                    return LedgerError(.unavailable, "\(context): database error \(state)", cause: error, file: file, line: line)
                }
            }
            return LedgerError(.unavailable, "\(context): database unavailable", cause: error, file: file, line: line)
        }
        return LedgerError(.unavailable, "\(context): database unavailable", cause: error, file: file, line: line)
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

/// Runs `operation` with a deadline. On timeout, `onTimeout` runs (e.g. closes the connection so
/// that the operation fails) and a ``LedgerError`` with code `unavailable` is thrown.
func withDeadline<T: Sendable>(
    _ timeout: Duration, _ what: String,
    onTimeout: @escaping @Sendable () -> Void = {},
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try? await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        while let next = try await group.next() {
            if let value = next { return value }
            if Task.isCancelled { break }
            onTimeout()
            throw LedgerError.unavailable("\(what): no answer from the database within \(timeout)")
        }
        throw LedgerError.unavailable("\(what): cancelled")
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
    /// Closes the connection without waiting (fails whatever is in flight on it).
    func closeNow() {
        let future: EventLoopFuture<Void> = self.close()
        _ = future
    }
}
