import CountersignWire
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore

/// The bytes of request bodies held by the calls in flight on the whole node, and of their replies
/// not yet written to a socket, against `limits.max_request_bytes_in_flight`.
///
/// A call keeps its body until its task ends, and a client may pipeline calls faster than the node
/// evaluates them (a 4 MiB plan takes tens of milliseconds of policy evaluation; a connection
/// delivers hundreds of them a second). Without a bound, pipelined large plans pile up until the
/// process runs out of memory: 200 plans of 3.7 MB held 1.8 GB. So a call is admitted only if its
/// body fits beside what is already held; otherwise it is answered `RESOURCE_EXHAUSTED` at once
/// and nothing of it is kept. The client retries later; nothing is decided, so nothing is approved.
///
/// A reply takes its call's place until it has been written to the socket. A client that sends calls
/// and does not read the replies is not read either once they back up, but the calls it had in
/// flight then still answer: 8 connections sending 760 KB plans (1.5 MB decisions) and reading
/// nothing held 1.1 GB of replies in the node until the idle timeout closed them, while the bound
/// on requests alone was 256 MiB. Counted here, those replies stop further calls instead.
///
/// One connection may hold at most ``connectionShare`` of it, so that one client cannot take it all.
///
/// Refusals are counted in `countersign_calls_refused_total{reason="request_bytes_in_flight"}`
/// (the node's limit) and `{reason="connection_bytes_in_flight"}` (a connection's share), and
/// logged at most once every ``logInterval``, with how many there were since the last line, so
/// that a flood of calls does not become a flood of log lines.
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

    /// What one connection may hold of it: an eighth, or a frame if that is more. One client that
    /// stops reading its replies (or pipelines large plans) then leaves the rest to the others.
    let connectionShare: Int

    private let state = NIOLockedValueBox(State())
    private let refusals = Counter(label: "countersign_calls_refused_total", dimensions: [("reason", "request_bytes_in_flight")])
    private let connectionRefusals = Counter(label: "countersign_calls_refused_total", dimensions: [("reason", "connection_bytes_in_flight")])
    private let logger: Logger

    init(limit: Int, maxFrameBytes: Int, logger: Logger) {
        self.limit = limit
        self.connectionShare = max(maxFrameBytes, limit / 8)
        self.logger = logger
    }

    /// Reserves `bytes` for a call of a connection that holds `connectionHeld` bytes already, or
    /// returns the status to answer it with when they do not fit in the connection's share or in
    /// the node's limit.
    func reserve(_ bytes: Int, connectionHeld: Int) -> Status? {
        let now = NIODeadline.now()
        let overShare = connectionHeld + bytes > connectionShare
        let (admitted, held, logRefusals) = state.withLockedValue { s -> (Bool, Int, Int?) in
            if !overShare, s.held + bytes <= limit {
                s.held += bytes
                return (true, s.held, nil)
            }
            s.refusedSinceLog += 1
            guard s.lastLog.map({ now - $0 >= Self.logInterval }) ?? true else { return (false, s.held, nil) }
            defer { s.refusedSinceLog = 0; s.lastLog = now }
            return (false, s.held, s.refusedSinceLog)
        }
        if admitted { return nil }
        (overShare ? connectionRefusals : refusals).increment()
        if let logRefusals {
            logger.warning("calls refused: request bytes in flight at the limit", metadata: [
                "cs.refused": "\(logRefusals)", "cs.held_bytes": "\(held)", "cs.limit_bytes": "\(limit)",
                "cs.connection_share_bytes": "\(connectionShare)",
            ])
        }
        if overShare {
            return Status(.resourceExhausted,
                          "this connection already holds \(connectionHeld) bytes of requests in flight and replies not yet sent; this call's \(bytes) would exceed its share (\(connectionShare): an eighth of limits.max_request_bytes_in_flight, or limits.max_frame_bytes if more): read the replies, or retry later")
        }
        return Status(.resourceExhausted,
                      "the node already holds \(held) bytes of requests in flight and replies not yet sent; this call's \(bytes) would exceed limits.max_request_bytes_in_flight (\(limit)): retry later")
    }

    /// Trades a call's reservation for the size of its reply, which is held whether or not it fits:
    /// the reply exists already, and calls are refused while the node holds more than the limit.
    func exchange(_ reserved: Int, for reply: Int) {
        state.withLockedValue { $0.held += reply - reserved }
    }

    /// Gives back what ``reserve(_:)`` or ``exchange(_:for:)`` took.
    func release(_ bytes: Int) {
        state.withLockedValue { $0.held -= bytes }
    }
}
