import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A fake alert receiver (something outside the product, like Slack): a plain HTTP/1.1 server on
/// 127.0.0.1 that records every request body and answers with the next status of its script
/// (then 200), or never answers at all (`hang`).
final class WebhookReceiver: Sendable {
    struct Received: Sendable {
        var method: String
        var contentType: String
        var body: [UInt8]

        /// The body as a JSON object.
        var json: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
        }
    }

    enum Behaviour: Sendable {
        /// Answers with these statuses in turn, then 200.
        case script([Int])
        /// Reads the request and never answers.
        case hang
    }

    private let channel: any Channel
    private let state: NIOLockedValueBox<(received: [Received], script: [Int], requests: Int)>
    let port: Int

    var url: String { "http://127.0.0.1:\(port)/hook" }
    var received: [Received] { state.withLockedValue { $0.received } }
    /// Requests seen, answered or not.
    var requests: Int { state.withLockedValue { $0.requests } }

    init(_ behaviour: Behaviour = .script([])) async throws {
        let state = NIOLockedValueBox((received: [Received](), script: [Int](), requests: 0))
        if case .script(let statuses) = behaviour { state.withLockedValue { $0.script = statuses } }
        let hang = if case .hang = behaviour { true } else { false }
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(Handler(state: state, hang: hang))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress!.port!
        self.state = state
    }

    /// Waits until `count` requests have been recorded, or `timeout` passes.
    func wait(for count: Int, timeout: Duration = .seconds(10)) async -> [Received] {
        let deadline = ContinuousClock.now + timeout
        while received.count < count, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        return received
    }

    func stop() async {
        try? await channel.close()
    }

    private final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let state: NIOLockedValueBox<(received: [Received], script: [Int], requests: Int)>
        let hang: Bool
        var head: HTTPRequestHead?
        var body: [UInt8] = []

        init(state: NIOLockedValueBox<(received: [Received], script: [Int], requests: Int)>, hang: Bool) {
            self.state = state
            self.hang = hang
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h):
                head = h
                body = []
            case .body(var buffer):
                body += buffer.readBytes(length: buffer.readableBytes) ?? []
            case .end:
                let status: Int = state.withLockedValue { s in
                    s.requests += 1
                    let status = s.script.isEmpty ? 200 : s.script.removeFirst()
                    if status == 200 && !hang {
                        s.received.append(Received(method: head?.method.rawValue ?? "", contentType: head?.headers.first(name: "Content-Type") ?? "",
                                                   body: body))
                    }
                    return status
                }
                if hang { return }
                var headers = HTTPHeaders()
                headers.add(name: "Content-Length", value: "0")
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .init(statusCode: status), headers: headers))),
                              promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            }
        }
    }
}
