import AsyncHTTPClient
public import CountersignConfig
import Foundation
public import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
public import ServiceLifecycle

/// One alert: what happened, in a line a person reads in Slack, and the facts behind it.
public struct Alert: Sendable, Equatable {
    public var event: AlertEvent
    /// One line for people (Slack shows it as the message).
    public var text: String
    /// Facts for machines: `request_id`, `owner`, `agent`, `verdict`, `ledger_index`, `reason`…
    public var details: [String: String]

    public init(_ event: AlertEvent, _ text: String, details: [String: String] = [:]) {
        self.event = event
        self.text = text
        self.details = details
    }
}

/// Sends alerts to the configured webhooks without ever holding up a decision.
///
/// ``post(_:)`` only puts the alert in a bounded queue and returns at once; when the queue is full
/// the alert is dropped, logged and counted (`countersign_alerts_total{outcome="dropped"}`). The
/// service's ``run()`` delivers the queue: each alert to each webhook subscribed to its event, as a
/// JSON `POST` whose `text` field is what Slack shows, retried with exponential backoff and jitter
/// on connection errors, timeouts, 408, 429 and 5xx, given up on any other answer or after
/// `alerts.max_attempts`. Every alert is also logged (level warning), so that a node with no
/// webhook still leaves a trace.
///
/// The body:
/// ```json
/// {"text":"[cs-a] VETO: …","event":"veto","node":"cs-a","at":"2026-11-23T10:00:00.000Z",
///  "details":{"request_id":"…","owner":"…"}}
/// ```
public final class Alerter: Service, Sendable {
    let settings: AlertSettings
    let node: String
    let logger: Logger
    private let queue: AsyncStream<Queued>
    private let continuation: AsyncStream<Queued>.Continuation
    private let draining = NIOLockedValueBox(false)
    private let dropped = NIOLockedValueBox(0)

    /// Deliveries in flight at once, across webhooks.
    static let maxInFlight = 16

    struct Queued: Sendable {
        var alert: Alert
        var atUnixMs: Int64
    }

    public init(settings: AlertSettings, node: String, logger: Logger) {
        self.settings = settings
        self.node = node
        self.logger = logger
        (queue, continuation) = AsyncStream.makeStream(of: Queued.self, bufferingPolicy: .bufferingOldest(settings.queueCapacity))
    }

    /// Queues `alert` for delivery and returns at once.
    public func post(_ alert: Alert) {
        logger.warning("alert", metadata: [
            "cs.alert": "\(alert.event.rawValue)", "cs.text": "\(alert.text)",
            "cs.details": .dictionary(alert.details.mapValues { .string($0) }),
        ])
        guard !settings.webhooks.isEmpty else { return }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        switch continuation.yield(Queued(alert: alert, atUnixMs: now)) {
        case .enqueued:
            break
        case .dropped, .terminated:
            AlertMetrics.count(alert.event, outcome: "dropped")
            // Logged for the first drop and every 100th after, so that a flood does not flood the log too.
            let count = dropped.withLockedValue { $0 += 1; return $0 }
            if count % 100 == 1 {
                logger.error("alert queue full or closed: alert dropped", metadata: [
                    "cs.alert": "\(alert.event.rawValue)", "cs.dropped_total": "\(count)",
                ])
            }
        @unknown default:
            break
        }
    }

    /// Delivers the queue until graceful shutdown, then what is still queued, one attempt each.
    public func run() async throws {
        guard !settings.webhooks.isEmpty else {
            try? await gracefulShutdown()
            return
        }
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.timeout = .init(connect: .milliseconds(Int64(settings.timeoutMs)), read: .milliseconds(Int64(settings.timeoutMs)))
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                var inFlight = 0
                for await queued in queue {
                    let body = Self.body(queued, node: node)
                    for webhook in settings.webhooks where webhook.events.contains(queued.alert.event) {
                        if inFlight >= Self.maxInFlight {
                            await group.next()
                            inFlight -= 1
                        }
                        group.addTask { await self.deliver(body, event: queued.alert.event, to: webhook, client: client) }
                        inFlight += 1
                    }
                }
                await group.waitForAll()
            }
        } onGracefulShutdown: {
            self.draining.withLockedValue { $0 = true }
            self.continuation.finish()
        }
        try? await client.shutdown()
    }

    /// One alert to one webhook, with retries.
    func deliver(_ body: [UInt8], event: AlertEvent, to webhook: Webhook, client: HTTPClient) async {
        let url: String
        do {
            url = try webhook.address.read()
        } catch {
            AlertMetrics.count(event, outcome: "failed")
            logger.error("alert webhook has no URL", metadata: ["cs.webhook": "\(webhook.address)", "cs.error": "\(error)"])
            return
        }
        var backoff = Double(settings.initialBackoffMs) / 1000
        for attempt in 1...settings.maxAttempts {
            let outcome: String
            do {
                var request = HTTPClientRequest(url: url)
                request.method = .POST
                request.headers.add(name: "Content-Type", value: "application/json")
                request.headers.add(name: "User-Agent", value: "countersign/\(CountersignServerVersion.string)")
                request.body = .bytes(ByteBuffer(bytes: body))
                let response = try await client.execute(request, timeout: .milliseconds(Int64(settings.timeoutMs)))
                _ = try? await response.body.collect(upTo: 64 * 1024)
                let code = Int(response.status.code)
                if (200..<300).contains(code) {
                    AlertMetrics.count(event, outcome: "delivered")
                    return
                }
                guard code == 408 || code == 429 || code >= 500 else {
                    AlertMetrics.count(event, outcome: "failed")
                    logger.error("alert webhook refused the alert; not retried", metadata: [
                        "cs.webhook": "\(webhook.address)", "cs.http_status": "\(code)", "cs.alert": "\(event.rawValue)",
                    ])
                    return
                }
                outcome = "HTTP \(code)"
            } catch {
                outcome = "\(error)"
            }
            let last = attempt == settings.maxAttempts || draining.withLockedValue({ $0 }) || Task.isCancelled
            logger.warning(last ? "alert not delivered; giving up" : "alert not delivered; will retry", metadata: [
                "cs.webhook": "\(webhook.address)", "cs.attempt": "\(attempt)", "cs.error": "\(outcome)",
                "cs.alert": "\(event.rawValue)",
            ])
            if last { break }
            try? await Task.sleep(for: .seconds(min(backoff, 60) * Double.random(in: 0.5...1.0)))
            backoff *= 2
        }
        AlertMetrics.count(event, outcome: "failed")
    }

    struct Body: Encodable {
        var text: String
        var event: String
        var node: String
        var at: String
        var details: [String: String]
    }

    static func body(_ queued: Queued, node: String) -> [UInt8] {
        let at = Date(timeIntervalSince1970: Double(queued.atUnixMs) / 1000)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let body = Body(text: "[\(node)] \(queued.alert.text)", event: queued.alert.event.rawValue, node: node,
                        at: formatter.string(from: at), details: queued.alert.details)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(body)) ?? Data("{\"text\":\"(alert could not be encoded)\"}".utf8))
    }
}

/// `countersign_alerts_total{event, outcome}`: delivered, failed (gave up) or dropped (queue full).
enum AlertMetrics {
    static let counters: [String: Counter] = {
        var all: [String: Counter] = [:]
        for event in AlertEvent.allCases {
            for outcome in ["delivered", "failed", "dropped"] {
                all["\(event.rawValue)/\(outcome)"] = Counter(label: "countersign_alerts_total",
                                                             dimensions: [("event", event.rawValue), ("outcome", outcome)])
            }
        }
        return all
    }()

    static func count(_ event: AlertEvent, outcome: String) {
        counters["\(event.rawValue)/\(outcome)"]?.increment()
    }
}
