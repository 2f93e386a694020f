public import CountersignConfig
import CountersignWire
public import Logging
import Metrics
public import NIOCore
import NIOConcurrencyHelpers
public import NIOPosix
import NIOSSL
public import ServiceLifecycle

/// The framed-protobuf server over mutual TLS: a swift-service-lifecycle `Service`.
///
/// A client is accepted only if its certificate chains to `tls.client_ca` (checked by BoringSSL)
/// **and** the SHA-256 of its SubjectPublicKeyInfo is pinned in `principals` (checked inside the
/// handshake, so an unpinned client never completes it). Every refused handshake is counted by
/// reason (`countersign_handshake_failures_total`) and logged once.
///
/// On graceful shutdown the listener closes, calls in flight finish, new calls on open connections
/// get `UNAVAILABLE`, and connections close once idle (or after `drainTimeout`).
public final class WireServer: Service, Sendable {
    public let configuration: CountersignConfiguration
    private let router: Router
    private let logger: Logger
    private let group: any EventLoopGroup
    private let sslContext: NIOSSLContext
    private let state = NIOLockedValueBox(State())
    private let drainTimeout: Duration

    private struct State {
        var serverChannel: (any Channel)?
        var connections: [ObjectIdentifier: any Channel] = [:]
        var boundWaiters: [CheckedContinuation<SocketAddress, any Error>] = []
        var boundAddress: SocketAddress?
        var shutdownRequested = false
        var shutdownWaiter: CheckedContinuation<Void, Never>?
    }

    /// - Parameters:
    ///   - configuration: `node.listen`, `tls`, `limits` and `principals` are used.
    ///   - router: the methods this server answers.
    ///   - drainTimeout: how long shutdown waits for calls in flight. Default 30 s.
    /// - Throws: when the TLS certificate, key or CA cannot be loaded.
    public init(configuration: CountersignConfiguration, router: Router, logger: Logger,
                group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, drainTimeout: Duration = .seconds(30)) throws {
        self.configuration = configuration
        self.router = router
        self.logger = logger
        self.group = group
        self.drainTimeout = drainTimeout
        self.sslContext = try configuration.tls.makeServerContext()
    }

    /// The address the server listens on, once bound (port 0 in the configuration picks a free one).
    public func boundAddress() async throws -> SocketAddress {
        try await withCheckedThrowingContinuation { continuation in
            state.withLockedValue { state in
                if let address = state.boundAddress { continuation.resume(returning: address) }
                else { state.boundWaiters.append(continuation) }
            }
        }
    }

    /// Serves until graceful shutdown (SIGTERM/SIGINT through the ServiceGroup) or ``shutdown()``.
    public func run() async throws {
        let channel: any Channel
        do {
            channel = try await bootstrap().bind(host: configuration.node.listen.host, port: configuration.node.listen.port).get()
        } catch {
            let waiters = state.withLockedValue { s in defer { s.boundWaiters = [] }; return s.boundWaiters }
            for w in waiters { w.resume(throwing: error) }
            throw error
        }
        let address = channel.localAddress!
        let waiters = state.withLockedValue { s -> [CheckedContinuation<SocketAddress, any Error>] in
            s.serverChannel = channel
            s.boundAddress = address
            defer { s.boundWaiters = [] }
            return s.boundWaiters
        }
        for w in waiters { w.resume(returning: address) }
        logger.info("listening", metadata: ["cs.address": "\(address)", "cs.principals": "\(configuration.principals.count)"])

        await withGracefulShutdownHandler {
            await self.waitForShutdownRequest()
        } onGracefulShutdown: {
            self.shutdown()
        }
        await drain(channel)
    }

    /// Begins a graceful shutdown (what SIGTERM does).
    public func shutdown() {
        let waiter = state.withLockedValue { s -> CheckedContinuation<Void, Never>? in
            s.shutdownRequested = true
            defer { s.shutdownWaiter = nil }
            return s.shutdownWaiter
        }
        waiter?.resume()
    }

    private func waitForShutdownRequest() async {
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLockedValue { s -> Bool in
                if s.shutdownRequested { return true }
                s.shutdownWaiter = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    private func drain(_ channel: any Channel) async {
        logger.info("shutting down: no new connections; finishing calls in flight")
        try? await channel.close()
        let open = state.withLockedValue { Array($0.connections.values) }
        for connection in open {
            connection.pipeline.fireUserInboundEventTriggered(DrainEvent())
        }
        let clock = ContinuousClock()
        let deadline = clock.now + drainTimeout
        while clock.now < deadline {
            if state.withLockedValue({ $0.connections.isEmpty }) { break }
            try? await Task.sleep(for: .milliseconds(20))
        }
        let left = state.withLockedValue { Array($0.connections.values) }
        for connection in left { try? await connection.close() }
        logger.info("stopped", metadata: ["cs.forced_closes": "\(left.count)"])
    }

    private func bootstrap() -> ServerBootstrap {
        let configuration = self.configuration
        let router = self.router
        let logger = self.logger
        let sslContext = self.sslContext
        let state = self.state
        let pins = Dictionary(configuration.principals.map { ($0.spkiSHA256, $0) }, uniquingKeysWith: { a, _ in a })
        let limits = configuration.limits
        let requestBytes = RequestBytesInFlight(limit: limits.maxRequestBytesInFlight, maxFrameBytes: limits.maxFrameBytes, logger: logger)
        let counters = Dictionary(uniqueKeysWithValues: HandshakeRejection.allCases.map {
            ($0, Counter(label: "countersign_handshake_failures_total", dimensions: [("reason", $0.rawValue)]))
        })
        let connectionsGauge = Gauge(label: "countersign_connections")
        let frameBytes = IncompleteFrameBytes(limit: limits.maxRequestBytesInFlight)
        let readPauses = Counter(label: "countersign_reads_paused_total", dimensions: [("reason", "incomplete_frame_bytes")])
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                var connectionLogger = logger
                connectionLogger[metadataKey: "cs.peer"] = "\(channel.remoteAddress?.description ?? "?")"
                let admitted = state.withLockedValue { s -> Bool in
                    guard s.connections.count < limits.maxConnections, !s.shutdownRequested else { return false }
                    s.connections[ObjectIdentifier(channel)] = channel
                    connectionsGauge.record(s.connections.count)
                    return true
                }
                guard admitted else {
                    connectionLogger.warning("connection refused: limit reached or shutting down",
                                             metadata: ["cs.max_connections": "\(limits.maxConnections)"])
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in
                    state.withLockedValue { s in
                        s.connections[ObjectIdentifier(channel)] = nil
                        connectionsGauge.record(s.connections.count)
                    }
                }
                let identity = ConnectionIdentity()
                let tls = NIOSSLServerHandler._makeSSLServerHandler(context: sslContext) { certificate, channel in
                    // Runs after BoringSSL has verified the chain to the configured CA.
                    let pin: String
                    do { pin = try spkiPin(of: certificate) } catch { return channel.eventLoop.makeFailedFuture(error) }
                    guard let principal = pins[pin] else {
                        identity.rejection = .unpinnedKey
                        return channel.eventLoop.makeFailedFuture(UnpinnedCertificate(pin: pin))
                    }
                    identity.principal = principal
                    return channel.eventLoop.makeSucceededVoidFuture()
                }
                let handler = ConnectionHandler(identity: identity, router: router, limits: limits, requestBytes: requestBytes,
                                                logger: connectionLogger) { reason in
                    counters[reason]?.increment()
                }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(tls)
                    // A client that does not read its replies is not read either: once the replies
                    // waiting for it pass the channel's high-water mark (64 KiB), the server stops
                    // reading its requests until they drain, and the idle timeout ends it. Without
                    // this, one such client made the node hold 6.6 GB of replies to 2 million
                    // ListKeys calls (100 MB sent).
                    try channel.pipeline.syncOperations.addHandler(BackPressureHandler())
                    // What connections have sent of frames not yet complete is bounded node-wide
                    // too: a frame that does not fit waits, unread.
                    try channel.pipeline.syncOperations.addHandler(
                        FrameAdmission(frameBytes: frameBytes, maxFrameBytes: limits.maxFrameBytes, pauses: readPauses))
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxFrameBytes: limits.maxFrameBytes)))
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
    }
}
