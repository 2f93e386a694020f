import CountersignClient
import CountersignTestSupport
import CountersignConfig
import CountersignLedger
import CountersignPolicy
import CountersignSigner
@testable import CountersignServer
import CountersignWire
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import Testing

/// Log lines a server wrote during a test.
final class LogCapture: @unchecked Sendable {
    struct Entry {
        let level: Logger.Level
        let message: String
        let metadata: [String: String]
    }
    private let entries = NIOLockedValueBox<[Entry]>([])

    var logger: Logger {
        Logger(label: "test") { _ in CaptureHandler(capture: self) }
    }

    var all: [Entry] { entries.withLockedValue { $0 } }

    func append(_ e: Entry) { entries.withLockedValue { $0.append(e) } }

    func handshakeRejections() -> [String] {
        all.filter { $0.message == "TLS handshake refused" }.compactMap { $0.metadata["cs.reason"] }
    }

    struct CaptureHandler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            var merged = metadata
            if let m = event.metadata { merged.merge(m) { _, b in b } }
            capture.append(Entry(level: event.level, message: event.message.description,
                                 metadata: merged.mapValues { "\($0)" }))
        }
    }
}

/// A WireServer on a free loopback port with the dev certificates, and clients for each identity.
final class TestServer: Sendable {
    let server: WireServer
    let port: Int
    let logs: LogCapture
    let configuration: CountersignConfiguration
    private let task: Task<Void, any Error>

    /// Starts a server. `configure` adjusts limits; `routes` adds methods beside Health.
    static func start(configure: (inout LimitSettings) -> Void = { _ in },
                      routes: (inout Router) -> Void = { _ in },
                      drainTimeout: Duration = .seconds(5)) async throws -> TestServer {
        var configuration = try CountersignConfiguration.load(path: TestEnvironment.configPath)
        configuration.node.listen = HostPort(host: "127.0.0.1", port: 0)
        configure(&configuration.limits)
        var router = Router()
        router.registerHealth(node: configuration.node) { NodeState(role: "active", activeAddress: "127.0.0.1:0") }
        routes(&router)
        let logs = LogCapture()
        let server = try WireServer(configuration: configuration, router: router, logger: logs.logger, drainTimeout: drainTimeout)
        let task = Task { try await server.run() }
        let address = try await server.boundAddress()
        return TestServer(server: server, port: address.port!, logs: logs, configuration: configuration, task: task)
    }

    private init(server: WireServer, port: Int, logs: LogCapture, configuration: CountersignConfiguration, task: Task<Void, any Error>) {
        self.server = server
        self.port = port
        self.logs = logs
        self.configuration = configuration
        self.task = task
    }

    func clientConfiguration(_ identity: String) throws -> ClientConfiguration {
        ClientConfiguration(host: "127.0.0.1", port: port, certificatePath: TestEnvironment.pki("\(identity).crt"),
                            privateKeyPath: TestEnvironment.pki("\(identity).key"),
                            trustRootsPath: configuration.tls.clientCAPath,
                            serverSPKISHA256: try #require(configuration.tls.serverSPKISHA256))
    }

    func client(_ identity: String) async throws -> CountersignClient {
        try await CountersignClient.connect(try clientConfiguration(identity))
    }

    func stop() async throws {
        server.shutdown()
        try await task.value
    }

    /// Waits until `condition` holds or `timeout` passes.
    func eventually(timeout: Duration = .seconds(5), _ condition: () -> Bool) async -> Bool {
        let end = ContinuousClock.now + timeout
        while ContinuousClock.now < end {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return condition()
    }
}

/// A bare connection (TLS configured by the test, or plaintext) that records what it receives.
final class RawConnection: @unchecked Sendable {
    let channel: any Channel
    private let received: NIOLockedValueBox<[UInt8]>

    private init(channel: any Channel, received: NIOLockedValueBox<[UInt8]>) {
        self.channel = channel
        self.received = received
    }

    var bytes: [UInt8] { received.withLockedValue { $0 } }

    /// `receiveBuffer` sets the socket's `SO_RCVBUF`: small, the kernel holds little of what the
    /// server sends a connection that does not read.
    static func connect(port: Int, tls: TLSConfiguration?, receiveBuffer: Int? = nil) async throws -> RawConnection {
        let received = NIOLockedValueBox<[UInt8]>([])
        let context = try tls.map { try NIOSSLContext(configuration: $0) }
        var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        if let receiveBuffer {
            bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(receiveBuffer))
        }
        let channel = try await bootstrap
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context {
                        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: "localhost"))
                    }
                    try channel.pipeline.syncOperations.addHandler(Recorder(received: received))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawConnection(channel: channel, received: received)
    }

    /// A TLS 1.3 connection presenting `identity`'s certificate.
    static func connect(port: Int, identity: String, receiveBuffer: Int? = nil) async throws -> RawConnection {
        try await connect(port: port, tls: tlsConfiguration(identity: identity), receiveBuffer: receiveBuffer)
    }

    static func tlsConfiguration(identity: String?) throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv13
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(TestEnvironment.pki("ca.crt")))
        if let identity {
            tls.certificateChain = try NIOSSLCertificate.fromPEMFile(TestEnvironment.pki("\(identity).crt")).map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: TestEnvironment.pki("\(identity).key"), format: .pem))
        }
        return tls
    }

    func send(_ bytes: [UInt8]) async throws {
        var buffer = channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        try await channel.writeAndFlush(buffer)
    }

    /// Whether the server closed the connection within `timeout`.
    func closed(within timeout: Duration) async -> Bool {
        let end = ContinuousClock.now + timeout
        while ContinuousClock.now < end {
            if !channel.isActive { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return !channel.isActive
    }

    /// The envelopes received so far (complete frames only).
    func envelopes() throws -> [Envelope] {
        var out: [Envelope] = []
        var rest = bytes[...]
        while rest.count >= 5 {
            let length = rest.dropFirst().prefix(4).reduce(0) { $0 << 8 | Int($1) }
            guard rest.count >= 5 + length else { break }
            out.append(try Envelope(protobuf: Array(rest.dropFirst(5).prefix(length))))
            rest = rest.dropFirst(5 + length)
        }
        return out
    }

    func close() async { try? await channel.close() }

    private final class Recorder: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let received: NIOLockedValueBox<[UInt8]>
        init(received: NIOLockedValueBox<[UInt8]>) { self.received = received }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
            received.withLockedValue { $0.append(contentsOf: bytes) }
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}

/// An echo request used by the tests' own routes: field 1 bytes, field 2 delay in ms.
struct EchoRequest: ProtoMessage {
    static let protoName = "countersign.testing.Echo"
    var payload: [UInt8] = []
    var delayMs: UInt32 = 0
    init() {}
    init(payload: [UInt8], delayMs: UInt32 = 0) {
        self.payload = payload
        self.delayMs = delayMs
    }
    mutating func decodeField(_ number: Int, _ wt: WireType, from r: inout ProtoReader) throws -> Bool {
        switch number {
        case 1: payload = try r.readBytes(wt)
        case 2: delayMs = try r.readUInt32(wt)
        default: return false
        }
        return true
    }
    func encode(to w: inout ProtoWriter) {
        w.write(1, bytes: payload)
        w.write(2, uint32: delayMs)
    }
}

extension Router {
    static let echoMethod = "/countersign.testing.Echo/Echo"
    static let officersOnlyMethod = "/countersign.testing.Echo/OfficersOnly"

    mutating func registerEcho() {
        async(Self.echoMethod) { (request: EchoRequest, _: CallContext) in
            if request.delayMs > 0 { try await Task.sleep(for: .milliseconds(Int(request.delayMs))) }
            return request
        }
        inline(Self.officersOnlyMethod, roles: [.officer]) { (request: EchoRequest, _: CallContext) in request }
    }
}

/// The whole decision path on a fresh database and the test token: the policy engine, the PKCS#11
/// signer with a keyring, the ledger holding the lease, and a WireServer answering over mTLS.
struct DecisionStack {
    let server: TestServer
    let ledger: Ledger
    let signer: TokenSigner
    let custodian: KeyCustodian
    let database: TestDatabase

    /// - Parameters:
    ///   - policy: the policy source (default: the built-in policy, fixed).
    ///   - alerts: where the decision service reports vetoes and deviations (default: nowhere).
    ///   - limits: the server's and the decision service's limits (default: the defaults).
    static func with<T>(policy: PolicySource = PolicySource(engine: PolicyEngine()), alerts: Alerter? = nil,
                        limits: LimitSettings = .defaults, _ body: (DecisionStack) async throws -> T) async throws -> T {
        try await TestTokens.withExclusiveUse(of: "cs-test-server") { try await withToken(policy: policy, alerts: alerts, limits: limits, body) }
    }

    private static func withToken<T>(policy: PolicySource, alerts: Alerter?, limits: LimitSettings,
                                     _ body: (DecisionStack) async throws -> T) async throws -> T {
        try await TestDatabase.withFresh { database in
            let logger = TestEnvironment.logger
            let signer = try TestTokens.shared.signer("cs-test-server")
            // A signer left running keeps probing (and re-initialising) the process's one module.
            defer { signer.shutdown() }
            let custodian = KeyCustodian(signer: signer, log: InMemoryKeyEventLog(),
                                         settings: TestTokens.shared.settings("cs-test-server"), logger: logger)
            _ = try await custodian.bootstrap(by: "test-ceremony")
            let ledger = try Ledger(database: database.settings,
                                    settings: LedgerSettings(origin: "test.local/ledger", checkpointIntervalMs: 100),
                                    signer: signer, logger: logger)
            let ledgerTask = Task { await ledger.run() }
            defer { ledgerTask.cancel() }
            try await ledger.acquireLease(holder: "test-node", ttl: .seconds(900))
            let decisions = DecisionService(policy: policy, signer: signer, ledger: ledger, alerts: alerts, limits: limits, logger: logger)
            let server = try await TestServer.start { $0 = limits } routes: { router in
                decisions.register(into: &router)
                router.registerCustody(custodian)
            }
            do {
                let result = try await body(DecisionStack(server: server, ledger: ledger, signer: signer, custodian: custodian, database: database))
                try await server.stop()
                return result
            } catch {
                try? await server.stop()
                throw error
            }
        }
    }
}
