public import CountersignWire
import CountersignVerify
import NIOConcurrencyHelpers
public import NIOCore
public import NIOPosix
import NIOSSL
import NIOTLS

/// How to reach and authenticate a Countersign server.
public struct ClientConfiguration: Sendable, Hashable {
    public var host: String
    public var port: Int
    /// This client's certificate (PEM); its key's SHA-256 SPKI must be pinned on the server.
    public var certificatePath: String
    /// This client's private key (PEM).
    public var privateKeyPath: String
    /// CA certificate(s) the server's certificate must chain to (PEM).
    public var trustRootsPath: String
    /// SHA-256 of the server's SubjectPublicKeyInfo, lowercase hex: the server is pinned too.
    public var serverSPKISHA256: String
    /// Name checked against the server certificate. Default `localhost`.
    public var serverHostname: String
    /// Deadline sent with calls that name none. Default 10 s.
    public var defaultDeadline: Duration
    /// Time allowed to connect and complete the handshake. Default 5 s.
    public var connectTimeout: Duration
    /// Largest reply frame accepted. Default 4 MiB.
    public var maxFrameBytes: Int

    public init(host: String, port: Int, certificatePath: String, privateKeyPath: String, trustRootsPath: String,
                serverSPKISHA256: String, serverHostname: String = "localhost", defaultDeadline: Duration = .seconds(10),
                connectTimeout: Duration = .seconds(5), maxFrameBytes: Int = Frame.defaultMaxBytes) {
        self.host = host
        self.port = port
        self.certificatePath = certificatePath
        self.privateKeyPath = privateKeyPath
        self.trustRootsPath = trustRootsPath
        self.serverSPKISHA256 = serverSPKISHA256.lowercased()
        self.serverHostname = serverHostname
        self.defaultDeadline = defaultDeadline
        self.connectTimeout = connectTimeout
        self.maxFrameBytes = maxFrameBytes
    }
}

/// A connection to a Countersign server over mutual TLS (TLS 1.3, both sides pinned), carrying
/// many calls at once, matched by `call_id`.
///
/// A call that the server answers with a non-OK status throws that ``Status`` (its `code` is the
/// gRPC code; a standby's `activeAddress` names the active node). A closed connection fails every
/// call in flight with `UNAVAILABLE`.
public final class CountersignClient: Sendable {
    private let channel: any Channel
    public let configuration: ClientConfiguration

    private init(channel: any Channel, configuration: ClientConfiguration) {
        self.channel = channel
        self.configuration = configuration
    }

    /// Connects and completes the handshake.
    /// - Throws: a ``Status`` with `UNAVAILABLE` when the server cannot be reached or refuses the
    ///   handshake (its message says why), or an error loading the certificates.
    public static func connect(_ configuration: ClientConfiguration,
                               group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> CountersignClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv13
        tls.maximumTLSVersion = .tlsv13
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(configuration.trustRootsPath))
        tls.certificateChain = try NIOSSLCertificate.fromPEMFile(configuration.certificatePath).map { .certificate($0) }
        tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: configuration.privateKeyPath, format: .pem))
        let context = try NIOSSLContext(configuration: tls)
        let pin = configuration.serverSPKISHA256
        let hostname = configuration.serverHostname
        let maxFrame = configuration.maxFrameBytes
        let timeoutMs = Int64(configuration.connectTimeout.components.seconds * 1000
                              + configuration.connectTimeout.components.attoseconds / 1_000_000_000_000_000)
        // The handshake's outcome, from the call handler that sees it: handed out here, not looked
        // up in the pipeline afterwards, where a handshake refused at once has already torn the
        // pipeline down and taken the reason with it.
        let handshakePromise = NIOLockedValueBox<EventLoopPromise<Void>?>(nil)

        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.milliseconds(timeoutMs))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let ssl = try NIOSSLClientHandler._makeSSLClientHandler(context: context, serverHostname: hostname) { certificate, channel in
                        do {
                            let actual = KeyID.of(spkiDER: try certificate.extractPublicKey().toSPKIBytes())
                            guard actual == pin else {
                                return channel.eventLoop.makeFailedFuture(Status(.unauthenticated, "server key \(actual) is not the pinned \(pin)"))
                            }
                            return channel.eventLoop.makeSucceededVoidFuture()
                        } catch {
                            return channel.eventLoop.makeFailedFuture(error)
                        }
                    }
                    try channel.pipeline.syncOperations.addHandler(ssl)
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxFrameBytes: maxFrame)))
                    let handshake = channel.eventLoop.makePromise(of: Void.self)
                    handshakePromise.withLockedValue { $0 = handshake }
                    try channel.pipeline.syncOperations.addHandler(ClientCallHandler(handshake: handshake))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: configuration.host, port: configuration.port).get()
        } catch {
            throw Status(.unavailable, "cannot connect to \(configuration.host):\(configuration.port): \(Self.reason(error))")
        }
        // Wait for the handshake: a refused certificate must fail here, not on the first call.
        guard let handshake = handshakePromise.withLockedValue({ $0 }) else {
            try? await channel.close()
            throw Status(.internal, "the connection to \(configuration.host):\(configuration.port) was set up without its call handler")
        }
        let timeout = channel.eventLoop.scheduleTask(in: .milliseconds(timeoutMs)) {
            handshake.fail(Status(.unavailable, "TLS handshake did not complete within \(timeoutMs) ms"))
        }
        do {
            try await handshake.futureResult.get()
            timeout.cancel()
        } catch {
            timeout.cancel()
            try? await channel.close()
            if let status = error as? Status { throw status }
            throw Status(.unavailable, "TLS handshake with \(configuration.host):\(configuration.port) failed: \(Self.reason(error))")
        }
        return CountersignClient(channel: channel, configuration: configuration)
    }

    /// Sends one call and waits for its reply body.
    /// - Parameter deadline: sent to the server as `deadline_ms`; the client stops waiting shortly after.
    /// - Throws: the server's ``Status`` when it is not OK; `UNAVAILABLE` when the connection closes;
    ///   `DEADLINE_EXCEEDED` when no reply arrives in time.
    public func call(method: String, body: [UInt8], deadline: Duration? = nil) async throws -> [UInt8] {
        try await send(method: method, body: body, deadline: deadline).get()
    }

    /// Sends one call without waiting: the future completes on ``eventLoop`` with the reply body,
    /// or fails as ``call(method:body:deadline:)`` throws. For callers that live on the event loop
    /// (a load generator), which then never hop threads per call.
    public func send(method: String, body: [UInt8], deadline: Duration? = nil) -> EventLoopFuture<[UInt8]> {
        let deadline = deadline ?? configuration.defaultDeadline
        let ms = UInt32(clamping: deadline.components.seconds * 1000 + deadline.components.attoseconds / 1_000_000_000_000_000)
        let promise = channel.eventLoop.makePromise(of: Envelope.self)
        let request = Envelope(callID: 0, method: method, body: body, deadlineMs: max(ms, 1))
        // The server answers by the deadline; allow it a little more before giving up here.
        let call = OutboundCall(envelope: request, promise: promise, giveUpAt: .now() + .milliseconds(Int64(ms) + 1000))
        channel.writeAndFlush(call).whenFailure { error in
            if let status = error as? Status {
                promise.fail(status)
            } else {
                // The server closed the connection before we could write: in TLS 1.3 that is how a
                // refused client certificate shows itself to the client.
                promise.fail(Status(.unavailable, "connection closed by the server (\(error)); if it happened right after "
                                    + "connecting, the server refused this client's certificate: is its key pinned?"))
            }
        }
        return promise.futureResult.flatMapErrorThrowing { error in
            if let status = error as? Status { throw status }
            throw Status(.unavailable, "connection failed: \(error)")
        }.flatMapThrowing { reply in
            let status = reply.status ?? .ok
            guard status.code == .ok else { throw status }
            return reply.body
        }
    }

    /// ``send(method:body:deadline:)`` with a typed request and reply.
    public func send<Request: ProtoMessage, Response: ProtoMessage>(
        _ method: String, _ request: Request, as: Response.Type = Response.self, deadline: Duration? = nil
    ) -> EventLoopFuture<Response> {
        send(method: method, body: request.protobufBytes(), deadline: deadline).flatMapThrowing { body in
            do {
                return try Response(protobuf: body)
            } catch {
                throw Status(.internal, "unparsable \(Response.protoName) from the server: \(error)")
            }
        }
    }

    /// Why a connection could not be made, in a few words ("connection refused", "timed out",
    /// "cannot resolve the host: …") rather than NIO's nested description of every attempt.
    static func reason(_ error: any Error) -> String {
        if let e = error as? NIOConnectionError {
            if let dns = e.dnsAError ?? e.dnsAAAAError { return "cannot resolve the host: \(dns)" }
            var reasons: [String] = []
            for attempt in e.connectionErrors {
                let r = reason(attempt.error)
                if !reasons.contains(r) { reasons.append(r) }
            }
            return reasons.isEmpty ? "\(e)" : reasons.joined(separator: "; ")
        }
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)).lowercased() }
        if let text = Self.boringSSLText(error) {
            if text.contains("CERTIFICATE_VERIFY_FAILED") {
                return "TLS handshake failed: the server's certificate does not chain to the CA this client trusts"
            }
            if text.contains("ALERT_UNKNOWN_CA") || text.contains("ALERT_BAD_CERTIFICATE") || text.contains("CERTIFICATE_REQUIRED")
                || text.contains("ALERT_CERTIFICATE_UNKNOWN") {
                return "TLS handshake failed: the server refused this client's certificate"
            }
            if text.contains("WRONG_VERSION_NUMBER") { return "TLS handshake failed: the other end does not speak TLS" }
            return "TLS handshake failed: \(text)"
        }
        if let c = error as? ChannelError, case .connectTimeout(let after) = c {
            return "timed out after \(after.nanoseconds / 1_000_000) ms"
        }
        return "\(error)"
    }

    /// BoringSSL's reasons behind a handshake error (TLS 1.3 reports a refused client certificate
    /// after the client's side of the handshake, so it arrives as an `sslError`).
    private static func boringSSLText(_ error: any Error) -> String? {
        if let tls = error as? NIOSSLError, case .handshakeFailed(let boring) = tls { return "\(boring)" }
        if let boring = error as? BoringSSLError { return "\(boring)" }
        return nil
    }

    /// The event loop of this connection: where ``send(method:body:deadline:)`` completes.
    public var eventLoop: any EventLoop { channel.eventLoop }

    /// Sends a typed request and decodes the typed reply.
    public func call<Request: ProtoMessage, Response: ProtoMessage>(
        _ method: String, _ request: Request, as: Response.Type = Response.self, deadline: Duration? = nil
    ) async throws -> Response {
        try await send(method, request, as: Response.self, deadline: deadline).get()
    }

    /// `Audit.Health`: the node's name, role (active or standby), version and state.
    public func health(deadline: Duration? = nil) async throws -> HealthResponse {
        try await call(Method.health, HealthRequest(), deadline: deadline)
    }

    /// `Audit.VerifyPlan`: the signed, ledgered decision on a plan.
    public func verifyPlan(_ request: VerifyPlanRequest, deadline: Duration? = nil) async throws -> Decision {
        try await call(Method.verifyPlan, request, deadline: deadline)
    }

    /// `Audit.GetDecision`: the latest decision for a request id.
    public func decision(requestID: String, deadline: Duration? = nil) async throws -> Decision {
        try await call(Method.getDecision, GetDecisionRequest(requestID: requestID), deadline: deadline)
    }

    /// `Audit.GetCheckpoint`: the latest signed checkpoint of the ledger.
    public func checkpoint(deadline: Duration? = nil) async throws -> CountersignWire.Checkpoint {
        try await call(Method.getCheckpoint, GetCheckpointRequest(), deadline: deadline)
    }

    /// `Audit.ProveInclusion`: the RFC 9162 inclusion proof of a leaf in a tree of `treeSize`.
    public func proveInclusion(leafIndex: UInt64, treeSize: UInt64, deadline: Duration? = nil) async throws -> InclusionProof {
        try await call(Method.proveInclusion, ProveInclusionRequest(leafIndex: leafIndex, treeSize: treeSize), deadline: deadline)
    }

    /// `Audit.ProveConsistency`: the RFC 9162 consistency proof between the trees of two sizes.
    public func proveConsistency(firstSize: UInt64, secondSize: UInt64, deadline: Duration? = nil) async throws -> ConsistencyProof {
        try await call(Method.proveConsistency, ProveConsistencyRequest(firstSize: firstSize, secondSize: secondSize), deadline: deadline)
    }

    /// Closes the connection; calls in flight fail with `UNAVAILABLE`.
    public func close() async {
        try? await channel.close()
    }

    /// Whether the connection is still open.
    public var isActive: Bool { channel.isActive }
}

/// A request on its way out, with the promise its reply completes and the time to stop waiting.
struct OutboundCall {
    var envelope: Envelope
    let promise: EventLoopPromise<Envelope>
    let giveUpAt: NIODeadline
}

/// Assigns call ids, matches replies to calls, fails a call with `DEADLINE_EXCEEDED` when no reply
/// came by its time, and fails every pending call when the connection ends or the server answers
/// with `call_id` 0 (a connection-level error).
///
/// One timer serves all the calls of the connection (``CallDeadlines``).
final class ClientCallHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = OutboundCall
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        let promise: EventLoopPromise<Envelope>
        let deadlineMs: UInt32
    }

    private var nextCallID: UInt64 = 1
    private var pending = CallDeadlines<Pending>()
    /// Completed when the TLS handshake completes, or failed with the reason the connection ended
    /// first; nil once completed.
    private var handshake: EventLoopPromise<Void>?
    private var failure: Status?
    private var receivedAny = false

    init(handshake: EventLoopPromise<Void>) {
        self.handshake = handshake
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls {
            handshake?.succeed()
            handshake = nil
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// A connection that never became active (refused, timed out) ends here: its handshake fails.
    func handlerRemoved(context: ChannelHandlerContext) {
        failAll(failure ?? Status(.unavailable, "the connection closed before the TLS handshake completed"))
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var call = unwrapOutboundIn(data)
        if let failure {
            call.promise.fail(failure)
            promise?.fail(failure)
            return
        }
        let id = nextCallID
        nextCallID += 1
        call.envelope.callID = id
        pending.add(id, deadline: call.giveUpAt, Pending(promise: call.promise, deadlineMs: call.envelope.deadlineMs),
                    on: context.eventLoop, expire: giveUp(context: context))
        var buffer = context.channel.allocator.buffer(capacity: 64)
        Frame.write(call.envelope, into: &buffer)
        context.write(wrapOutboundOut(buffer), promise: promise)
    }

    /// What the give-up timer runs when it fires: fails the calls whose time is up.
    private func giveUp(context: ChannelHandlerContext) -> @Sendable () -> Void {
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
        return {
            let handler = bound.value
            for (_, call) in handler.pending.expire(on: ctx.value.eventLoop, handler.giveUp(context: ctx.value)) {
                call.promise.fail(Status(.deadlineExceeded, "no reply within \(call.deadlineMs) ms"))
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var frame = unwrapInboundIn(data)
        let bytes = frame.readBytes(length: frame.readableBytes) ?? []
        guard let envelope = try? Envelope(protobuf: bytes) else {
            failAll(Status(.internal, "unparsable envelope from the server"))
            context.close(promise: nil)
            return
        }
        if envelope.callID == 0 {
            failAll(envelope.status ?? Status(.unknown, "connection-level error without a status"))
            return
        }
        receivedAny = true
        pending.remove(envelope.callID)?.promise.succeed(envelope)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let status = (error as? Status) ?? Status(.unavailable, "connection error: \(CountersignClient.reason(error))")
        failAll(status)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(failure ?? Status(.unavailable, receivedAny
            ? "connection closed by the server"
            : "connection closed by the server before any reply (was this client's certificate refused? its key must be pinned on the server)"))
        context.fireChannelInactive()
    }

    private func failAll(_ status: Status) {
        if failure == nil { failure = status }
        handshake?.fail(status)
        handshake = nil
        for call in pending.removeAll() { call.promise.fail(status) }
    }
}
