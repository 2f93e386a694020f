import CountersignWire
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore

/// The bytes of request bodies held by the calls in flight on the whole node, against
/// `limits.max_request_bytes_in_flight`.
///
/// A call keeps its body until its task ends, and a client may pipeline calls faster than the node
/// evaluates them (a 4 MiB plan takes tens of milliseconds of policy evaluation; a connection
/// delivers hundreds of them a second). Without a bound, pipelined large plans pile up until the
/// process runs out of memory: 200 plans of 3.7 MB held 1.8 GB. So a call is admitted only if its
/// body fits beside what is already held; otherwise it is answered `RESOURCE_EXHAUSTED` at once
/// and nothing of it is kept. The client retries later; nothing is decided, so nothing is approved.
///
/// Refusals are counted in `countersign_calls_refused_total{reason="request_bytes_in_flight"}`
/// and logged at most once every ``logInterval``, with how many there were since the last line,
/// so that a flood of calls does not become a flood of log lines.
final class RequestBytesInFlight: Sendable {
    /// `limits.max_request_bytes_in_flight`.
    let limit: Int
    /// The shortest time between two log lines about refusals.
    static let logInterval = TimeAmount.seconds(10)

    private struct State {
        var held = 0
        var refusedSinceLog = 0
        var lastLog: NIODeadline?
    }

    private let state = NIOLockedValueBox(State())
    private let refusals = Counter(label: "countersign_calls_refused_total", dimensions: [("reason", "request_bytes_in_flight")])
    private let logger: Logger

    init(limit: Int, logger: Logger) {
        self.limit = limit
        self.logger = logger
    }

    /// Reserves `bytes` for a call, or returns the status to answer it with when they do not fit.
    func reserve(_ bytes: Int) -> Status? {
        let now = NIODeadline.now()
        let (admitted, held, logRefusals) = state.withLockedValue { s -> (Bool, Int, Int?) in
            if s.held + bytes <= limit {
                s.held += bytes
                return (true, s.held, nil)
            }
            s.refusedSinceLog += 1
            guard s.lastLog.map({ now - $0 >= Self.logInterval }) ?? true else { return (false, s.held, nil) }
            defer { s.refusedSinceLog = 0; s.lastLog = now }
            return (false, s.held, s.refusedSinceLog)
        }
        if admitted { return nil }
        refusals.increment()
        if let logRefusals {
            logger.warning("calls refused: request bytes in flight at the limit", metadata: [
                "cs.refused": "\(logRefusals)", "cs.held_bytes": "\(held)", "cs.limit_bytes": "\(limit)",
            ])
        }
        return Status(.resourceExhausted,
                      "the node already holds \(held) bytes of requests in flight; this call's \(bytes) would exceed limits.max_request_bytes_in_flight (\(limit)): retry later")
    }

    /// Gives back what ``reserve(_:)`` took, once the call's task has ended.
    func release(_ bytes: Int) {
        state.withLockedValue { $0.held -= bytes }
    }
}
