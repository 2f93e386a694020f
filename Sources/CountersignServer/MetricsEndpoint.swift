public import CountersignConfig
public import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
public import Prometheus
public import ServiceLifecycle

/// `/metrics` (the Prometheus text format) and `/healthz` on a separate HTTP port, meant for
/// loopback (`node.metrics_listen`). `/healthz` answers 200 `ok` when the node can decide (the
/// signer is available and this node holds the ledger lease), 503 with the reason otherwise.
public final class MetricsEndpoint: Service, Sendable {
    public let address: HostPort
    let registry: PrometheusCollectorRegistry
    let health: @Sendable () -> (ok: Bool, detail: String)
    let logger: Logger

    public init(address: HostPort, registry: PrometheusCollectorRegistry, logger: Logger,
                health: @escaping @Sendable () -> (ok: Bool, detail: String)) {
        self.address = address
        self.registry = registry
        self.logger = logger
        self.health = health
    }

    public func run() async throws {
        let registry = self.registry
        let health = self.health
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(registry: registry, health: health))
                }
            }
            .bind(host: address.host, port: address.port).get()
        logger.info("metrics listening", metadata: ["cs.address": "\(channel.localAddress?.description ?? "?")"])
        await withGracefulShutdownHandler {
            try? await channel.closeFuture.get()
        } onGracefulShutdown: {
            channel.close(promise: nil)
        }
    }
}

final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let registry: PrometheusCollectorRegistry
    let health: @Sendable () -> (ok: Bool, detail: String)
    private var head: HTTPRequestHead?

    init(registry: PrometheusCollectorRegistry, health: @escaping @Sendable () -> (ok: Bool, detail: String)) {
        self.registry = registry
        self.health = health
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let head else { return }
            self.head = nil
            let (status, contentType, body): (HTTPResponseStatus, String, [UInt8])
            switch (head.method, head.uri) {
            case (.GET, "/metrics"):
                (status, contentType, body) = (.ok, "text/plain; version=0.0.4", registry.emitToBuffer())
            case (.GET, "/healthz"):
                let h = health()
                (status, contentType, body) = (h.ok ? .ok : .serviceUnavailable, "text/plain", Array((h.ok ? "ok\n" : "unavailable: \(h.detail)\n").utf8))
            case (.GET, _):
                (status, contentType, body) = (.notFound, "text/plain", Array("not found: try /metrics or /healthz\n".utf8))
            default:
                (status, contentType, body) = (.methodNotAllowed, "text/plain", Array("GET only\n".utf8))
            }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: contentType)
            headers.add(name: "Content-Length", value: "\(body.count)")
            headers.add(name: "Connection", value: "close")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }
}
