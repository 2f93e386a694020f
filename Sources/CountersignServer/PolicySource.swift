public import CountersignConfig
public import CountersignPolicy
import Foundation
public import Logging
import CountersignVerify
import CountersignWire
import NIOConcurrencyHelpers
public import ServiceLifecycle

/// The policy decisions are made with, read from `policy.file` (or the built-in default).
///
/// The file is watched: a change is picked up within ``pollInterval``. A file that cannot be read
/// or is not a valid policy does not stop the node and is never replaced by an older or a default
/// policy: every decision is `UNAVAILABLE`, naming the problem, until the file is valid again
/// (fail secure). Every decision records the SHA-256 of the policy it was made with.
public final class PolicySource: Service, Sendable {
    public enum State: Sendable {
        case loaded(PolicyEngine)
        case invalid(String)
    }

    let file: String?
    let logger: Logger
    let alerts: Alerter?
    let pollInterval: Duration
    private let box: NIOLockedValueBox<(state: State, stamp: FileStamp?)>

    /// A policy that never changes (tests, `plan check`).
    public init(engine: PolicyEngine) {
        file = nil
        logger = Logger(label: "countersign.policy")
        alerts = nil
        pollInterval = .seconds(1)
        box = NIOLockedValueBox((.loaded(engine), nil))
    }

    /// Loads `settings.file` now; a bad file is logged and leaves the source ``State/invalid(_:)``.
    public init(settings: PolicySettings, logger: Logger, alerts: Alerter? = nil, pollInterval: Duration = .seconds(1)) {
        file = settings.file
        self.logger = logger
        self.alerts = alerts
        self.pollInterval = pollInterval
        box = NIOLockedValueBox((.invalid("not loaded yet"), nil))
        reload(force: true)
    }

    /// The current state.
    public var state: State { box.withLockedValue { $0.state } }

    /// SHA-256 of the policy in force, lowercase hex; `nil` while the file is invalid.
    public var sha256Hex: String? {
        if case .loaded(let engine) = state { return Hex.encode(engine.policySHA256) }
        return nil
    }

    /// The engine to decide with.
    /// - Throws: ``Status`` `UNAVAILABLE` naming the problem when the policy file is not valid.
    public func engine() throws -> PolicyEngine {
        switch state {
        case .loaded(let engine): return engine
        case .invalid(let reason): throw Status(.unavailable, "no valid policy: \(reason)")
        }
    }

    /// Re-reads the file if it changed since the last read (or always, with `force`).
    func reload(force: Bool = false) {
        guard let file else {
            box.withLockedValue { $0.state = .loaded(PolicyEngine(policy: .defaults)) }
            return
        }
        let stamp = FileStamp(path: file)
        let unchanged = box.withLockedValue { $0.stamp == stamp && stamp != nil }
        if unchanged && !force { return }
        let next: State
        do {
            next = .loaded(PolicyEngine(policy: try Self.load(file)))
        } catch {
            next = .invalid("\(error)")
        }
        let previous = box.withLockedValue { s -> State in
            defer { s = (next, stamp) }
            return s.state
        }
        switch next {
        case .loaded(let engine):
            let digest = Hex.encode(engine.policySHA256)
            logger.info("policy loaded", metadata: ["cs.policy_file": "\(file)", "cs.policy_sha256": "\(digest)"])
            if case .invalid = previous, !force {
                alerts?.post(Alert(.policyFault, "policy file valid again: decisions resume",
                                   details: ["file": file, "policy_sha256": digest]))
            }
        case .invalid(let reason):
            let repeated = if case .invalid(let before) = previous { before == reason } else { false }
            if force || !repeated {
                logger.error("policy file is not valid: every decision is UNAVAILABLE until it is fixed",
                             metadata: ["cs.policy_file": "\(file)", "cs.error": "\(reason)"])
                alerts?.post(Alert(.policyFault, "policy file is not valid: every decision is UNAVAILABLE until it is fixed",
                                   details: ["file": file, "reason": reason]))
            }
        }
    }

    /// Watches the file until shutdown.
    public func run() async throws {
        guard file != nil else {
            // Nothing to watch; a service that returns early would stop the node.
            try? await gracefulShutdown()
            return
        }
        await cancelWhenGracefulShutdown {
            while (try? await Task.sleep(for: self.pollInterval)) != nil {
                self.reload()
            }
        }
    }

    /// Reads and validates a policy file.
    /// - Throws: ``ConfigurationError`` (`policy.file`) naming the file and the problem.
    public static func load(_ file: String) throws -> Policy {
        guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
            throw ConfigurationError(key: "policy.file", message: "cannot read \(file)")
        }
        do {
            return try Policy.load(yaml: text)
        } catch {
            throw ConfigurationError(key: "policy.file", message: "\(file): \(error)")
        }
    }
}

/// What tells that a file changed: its inode, size and modification time.
struct FileStamp: Equatable {
    var inode: UInt64
    var size: Int64
    var modifiedNs: Int64

    init?(path: String) {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        inode = UInt64(st.st_ino)
        size = Int64(st.st_size)
        modifiedNs = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
    }
}
