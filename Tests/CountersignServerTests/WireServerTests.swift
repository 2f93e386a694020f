import CountersignClient
import CountersignConfig
import CountersignTestSupport
@testable import CountersignServer
import CountersignWire
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import Testing

@Suite(.serialized) struct WireServerTests {
    @Test func healthOverMutualTLS() async throws {
        let server = try await TestServer.start()
        let client = try await server.client("orchestrator")
        let health = try await client.health()
        #expect(health.node == server.configuration.node.name)
        #expect(health.role == "active")
        #expect(health.version == CountersignServerVersion.string)
        #expect(health.principal == "orchestrator")
        await client.close()
        try await server.stop()
    }

    enum Negative: String, CaseIterable, Sendable {
        case noClientCertificate, otherCA, unpinned, tls12Only, plaintext
    }

    @Test(arguments: Negative.allCases)
    func refusedHandshakesAreLoggedWithTheirReason(_ negative: Negative) async throws {
        let server = try await TestServer.start()
        let expected: HandshakeRejection
        let connection: RawConnection
        switch negative {
        case .noClientCertificate:
            expected = .noClientCertificate
            connection = try await RawConnection.connect(port: server.port, tls: try RawConnection.tlsConfiguration(identity: nil))
        case .otherCA:
            expected = .unknownCA
            connection = try await RawConnection.connect(port: server.port, identity: "rogue-client")
        case .unpinned:
            expected = .unpinnedKey
            connection = try await RawConnection.connect(port: server.port, identity: "unpinned")
        case .tls12Only:
            expected = .tlsVersion
            var tls = try RawConnection.tlsConfiguration(identity: "orchestrator")
            tls.minimumTLSVersion = .tlsv12
            tls.maximumTLSVersion = .tlsv12
            connection = try await RawConnection.connect(port: server.port, tls: tls)
        case .plaintext:
            expected = .notTLS
            connection = try await RawConnection.connect(port: server.port, tls: nil)
            try await connection.send(Frame.bytes(of: Envelope(callID: 1, method: Method.health)))
        }
        // Whatever the client sent, a refused peer must never get a reply frame, and is cut off.
        try? await connection.send(Frame.bytes(of: Envelope(callID: 1, method: Method.health)))
        #expect(await connection.closed(within: .seconds(5)))
        #expect(await server.eventually { !server.logs.handshakeRejections().isEmpty })
        #expect(server.logs.handshakeRejections() == [expected.rawValue], "logged once, with its reason")
        if negative != .plaintext {
            #expect(try connection.envelopes().isEmpty)
        }
        await connection.close()
        try await server.stop()
    }

    @Test func theRealClientIsRefusedWhenUnpinned() async throws {
        let server = try await TestServer.start()
        await #expect(throws: Status.self) {
            let client = try await server.client("unpinned")
            _ = try await client.health()
        }
        try await server.stop()
    }

    /// The real client says in a few words why it could not get through: nothing listening, a
    /// server certificate from another CA, its own certificate refused by the server.
    @Test func theRealClientSaysWhyItCannotConnect() async throws {
        let server = try await TestServer.start()
        func failure(_ configuration: ClientConfiguration) async -> String {
            do {
                let client = try await CountersignClient.connect(configuration)
                _ = try await client.health()
                await client.close()
                return "connected"
            } catch let status as Status {
                return status.message
            } catch {
                return "\(error)"
            }
        }
        let gone = try await TestServer.start()
        let nothing = try gone.clientConfiguration("orchestrator")
        try await gone.stop()
        let refused = await failure(nothing)
        #expect(refused.hasSuffix(": connection refused"), "\(refused)")

        var otherCA = try server.clientConfiguration("orchestrator")
        otherCA.trustRootsPath = TestEnvironment.pki("rogue-ca.crt")
        let untrusted = await failure(otherCA)
        #expect(untrusted.contains("the server's certificate does not chain to the CA this client trusts"), "\(untrusted)")

        let rogue = await failure(try server.clientConfiguration("rogue-client"))
        #expect(rogue.contains("the server refused this client's certificate"), "\(rogue)")
        try await server.stop()
    }

    @Test func clientRefusesAServerWithAnotherKey() async throws {
        let server = try await TestServer.start()
        var configuration = try server.clientConfiguration("orchestrator")
        configuration.serverSPKISHA256 = String(repeating: "0", count: 64)
        let error = await #expect(throws: Status.self) { _ = try await CountersignClient.connect(configuration) }
        #expect(error?.code == .unavailable || error?.code == .unauthenticated)
        try await server.stop()
    }

    @Test func handshakeTimeoutCutsOffASilentPeer() async throws {
        let server = try await TestServer.start { $0.handshakeTimeoutMs = 200 }
        let connection = try await RawConnection.connect(port: server.port, tls: nil)
        #expect(await connection.closed(within: .seconds(3)))
        #expect(server.logs.handshakeRejections() == [HandshakeRejection.timeout.rawValue])
        try await server.stop()
    }

    @Test func slowDripClientIsCutOffByTheIdleTimeout() async throws {
        let server = try await TestServer.start { $0.idleTimeoutMs = 300 }
        let connection = try await RawConnection.connect(port: server.port, identity: "orchestrator")
        let frame = Frame.bytes(of: Envelope(callID: 1, method: Method.health))
        let start = ContinuousClock.now
        // One byte every 50 ms never completes a frame in time; the server must not wait forever.
        for byte in frame + [UInt8](repeating: 0, count: 100) {
            if !connection.channel.isActive { break }
            try? await connection.send([byte])
            try await Task.sleep(for: .milliseconds(50))
            if ContinuousClock.now - start > .seconds(5) { break }
        }
        #expect(await connection.closed(within: .seconds(2)))
        #expect(ContinuousClock.now - start < .seconds(4))
        try await server.stop()
    }

    @Test func oversizeFrameIsRefusedFromItsHeader() async throws {
        let server = try await TestServer.start { $0.maxFrameBytes = 1024 }
        let connection = try await RawConnection.connect(port: server.port, identity: "orchestrator")
        // The header alone announces 1025 bytes; the server must answer without waiting for them.
        try await connection.send([0, 0, 0, 0x04, 0x01])
        #expect(await connection.closed(within: .seconds(3)))
        let replies = try connection.envelopes()
        #expect(replies.count == 1)
        #expect(replies.first?.callID == 0)
        #expect(replies.first?.status?.code == .resourceExhausted)
        try await server.stop()
    }

    @Test func nonZeroFlagsAndGarbageEnvelopesGetCallIDZeroAndAClose() async throws {
        let server = try await TestServer.start()
        for bad in [[UInt8]([1, 0, 0, 0, 0]), [0, 0, 0, 0, 3, 0xff, 0xff, 0xff], [0, 0, 0, 0, 2, 0x12, 0x05]] {
            let connection = try await RawConnection.connect(port: server.port, identity: "orchestrator")
            try await connection.send(bad)
            #expect(await connection.closed(within: .seconds(3)))
            let replies = try connection.envelopes()
            #expect(replies.map(\.callID) == [0])
            #expect(replies.first?.status?.code == .invalidArgument)
        }
        try await server.stop()
    }

    @Test func invalidBodyUnknownMethodAndPermissionKeepTheConnectionOpen() async throws {
        let server = try await TestServer.start { _ in } routes: { $0.registerEcho() }
        let client = try await server.client("orchestrator")
        let invalid = await #expect(throws: Status.self) {
            _ = try await client.call(method: Method.health, body: [0x0f])  // wire type 7
        }
        #expect(invalid?.code == .invalidArgument)
        let unknown = await #expect(throws: Status.self) {
            _ = try await client.call(method: "/countersign.v1.Audit/Nope", body: [])
        }
        #expect(unknown?.code == .unimplemented)
        let denied = await #expect(throws: Status.self) {
            _ = try await client.call(Router.officersOnlyMethod, EchoRequest(payload: [1]), as: EchoRequest.self)
        }
        #expect(denied?.code == .permissionDenied)
        // Still open and working.
        #expect(try await client.health().principal == "orchestrator")
        let officer = try await server.client("officer-1")
        #expect(try await officer.call(Router.officersOnlyMethod, EchoRequest(payload: [7]), as: EchoRequest.self).payload == [7])
        await client.close()
        await officer.close()
        try await server.stop()
    }

    @Test func thousandConcurrentCallsOnOneConnection() async throws {
        let server = try await TestServer.start { _ in } routes: { $0.registerEcho() }
        let client = try await server.client("orchestrator")
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<1000 {
                group.addTask {
                    let payload = Array("call-\(i)".utf8)
                    let reply = try await client.call(Router.echoMethod, EchoRequest(payload: payload, delayMs: UInt32(i % 7)), as: EchoRequest.self)
                    return reply.payload == payload
                }
            }
            var correct = 0
            for try await ok in group where ok { correct += 1 }
            #expect(correct == 1000)
        }
        await client.close()
        try await server.stop()
    }

    /// A client that sends calls and never reads the replies is not read either once its replies
    /// back up: its sending stalls after what the sockets' buffers hold, instead of the server
    /// reading on and keeping every reply in memory; and the idle timeout then closes it.
    @Test func aClientThatDoesNotReadItsRepliesStopsBeingRead() async throws {
        let server = try await TestServer.start { $0.idleTimeoutMs = 2000 }
        let connection = try await RawConnection.connect(port: server.port, identity: "orchestrator")
        let health = Frame.bytes(of: Envelope(callID: 1, method: Method.health))
        try await connection.send(health)
        #expect(await server.eventually { (try? connection.envelopes().count) == 1 })
        try await connection.channel.setOption(ChannelOptions.autoRead, value: false)
        let chunk = [UInt8]((0..<2000).flatMap { i in Frame.bytes(of: Envelope(callID: UInt64(i + 2), method: Method.health)) })
        let limit = 96 << 20  // without back-pressure, all of it goes: 4 million calls the server answers into memory
        var sent = 0
        var stalled = false
        while sent < limit {
            var buffer = connection.channel.allocator.buffer(capacity: chunk.count)
            buffer.writeBytes(chunk)
            let written = connection.channel.eventLoop.makePromise(of: Void.self)
            connection.channel.writeAndFlush(buffer, promise: written)
            let done = NIOLockedValueBox(false)
            written.futureResult.whenComplete { _ in done.withLockedValue { $0 = true } }
            let deadline = ContinuousClock.now + .seconds(3)
            while !done.withLockedValue({ $0 }) && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            guard done.withLockedValue({ $0 }) else { stalled = true; break }
            sent += chunk.count
        }
        #expect(stalled, "the server read all \(sent) bytes of calls while their replies went unread")
        #expect(sent < limit)
        // Nothing completes a frame while the server does not read: the idle timeout closes it.
        #expect(await connection.closed(within: .seconds(10)))
        await connection.close()
        try await server.stop()
    }

    /// No reply frame is larger than `limits.max_frame_bytes`, whatever a route returns: the call
    /// gets `RESOURCE_EXHAUSTED` instead, and the connection and its other calls go on.
    @Test func aReplyAboveTheFrameLimitBecomesAnError() async throws {
        let server = try await TestServer.start { $0.maxFrameBytes = 64 << 10 } routes: { router in
            router.async(Router.echoMethod) { (request: EchoRequest, _: CallContext) in
                EchoRequest(payload: request.payload + request.payload)  // twice what came in
            }
        }
        let client = try await server.client("orchestrator")
        let error = await #expect(throws: Status.self) {
            _ = try await client.call(Router.echoMethod, EchoRequest(payload: [UInt8](repeating: 7, count: 40 << 10)), as: EchoRequest.self)
        }
        #expect(error?.code == .resourceExhausted)
        #expect(error?.message.contains("above limits.max_frame_bytes (65536)") == true)
        let small = try await client.call(Router.echoMethod, EchoRequest(payload: [1, 2]), as: EchoRequest.self)
        #expect(small.payload == [1, 2, 1, 2])
        await client.close()
        try await server.stop()
    }

    /// Calls beyond `limits.max_calls_per_connection` on one connection wait, unread, until one
    /// ends: every one is answered, none refused, and no more than the limit run at once.
    @Test func callsBeyondTheConnectionsLimitWaitInsteadOfBeingRefused() async throws {
        let running = NIOLockedValueBox((now: 0, most: 0))
        let server = try await TestServer.start { $0.maxCallsPerConnection = 4 } routes: { router in
            router.async(Router.echoMethod) { (request: EchoRequest, _: CallContext) in
                running.withLockedValue { $0.now += 1; $0.most = max($0.most, $0.now) }
                try await Task.sleep(for: .milliseconds(20))
                running.withLockedValue { $0.now -= 1 }
                return request
            }
        }
        let connection = try await RawConnection.connect(port: server.port, identity: "orchestrator")
        var frames: [UInt8] = []
        for i in 1...40 {
            frames += Frame.bytes(of: Envelope(callID: UInt64(i), method: Router.echoMethod,
                                               body: EchoRequest(payload: [UInt8(i)]).protobufBytes()))
        }
        try await connection.send(frames)
        #expect(await server.eventually(timeout: .seconds(10)) { (try? connection.envelopes().count) == 40 })
        let replies = try connection.envelopes()
        #expect(replies.allSatisfy { ($0.status?.code ?? .ok) == .ok })
        #expect(Set(replies.map(\.callID)) == Set(1...40))
        #expect(try replies.allSatisfy { try EchoRequest(protobuf: $0.body).payload == [UInt8($0.callID)] })
        let most = running.withLockedValue { $0.most }
        #expect(most <= 4 && most >= 2, "at most the limit, and more than one, ran at once: \(most)")
        await connection.close()
        try await server.stop()
    }

    /// Request bodies held by calls in flight are bounded node-wide: a call that would go above
    /// `limits.max_request_bytes_in_flight` is refused at once, on any connection, while smaller
    /// ones still fit; the bytes come back when a call ends, answered or cut off by its deadline.
    @Test func requestBytesInFlightAreBoundedAcrossConnections() async throws {
        let server = try await TestServer.start {
            $0.maxFrameBytes = 64 << 10
            $0.maxRequestBytesInFlight = 100 << 10
        } routes: { $0.registerEcho() }
        let first = try await server.client("orchestrator")
        let second = try await server.client("orchestrator")
        let third = try await server.client("orchestrator")
        let large = [UInt8](repeating: 7, count: 40 << 10)

        // Two slow calls of 40 KiB, on two connections (each may hold 64 KiB, a frame), hold 80 KiB.
        async let slow1 = first.call(Router.echoMethod, EchoRequest(payload: large, delayMs: 1500), as: EchoRequest.self)
        async let slow2 = third.call(Router.echoMethod, EchoRequest(payload: large, delayMs: 1500), as: EchoRequest.self)
        try await Task.sleep(for: .milliseconds(300))
        let asked = ContinuousClock.now
        let refused = await #expect(throws: Status.self) {
            _ = try await second.call(Router.echoMethod, EchoRequest(payload: large), as: EchoRequest.self)
        }
        #expect(refused?.code == .resourceExhausted)
        #expect(refused?.message.contains("limits.max_request_bytes_in_flight") == true, "\(refused?.message ?? "")")
        #expect(ContinuousClock.now - asked < .milliseconds(1000), "refused at once, not after the slow calls")
        #expect(try await second.call(Router.echoMethod, EchoRequest(payload: [1, 2, 3]), as: EchoRequest.self).payload == [1, 2, 3])
        #expect(try await slow1.payload == large)
        #expect(try await slow2.payload == large)
        #expect(server.logs.all.filter { $0.message.contains("request bytes in flight at the limit") }.map { $0.metadata["cs.refused"] } == ["1"])

        // Calls cut off by their deadline give their bytes back when their task ends.
        for _ in 0..<2 {
            let expired = await #expect(throws: Status.self) {
                _ = try await first.call(Router.echoMethod, EchoRequest(payload: large, delayMs: 5000), as: EchoRequest.self,
                                         deadline: .milliseconds(100))
            }
            #expect(expired?.code == .deadlineExceeded)
        }
        try await Task.sleep(for: .milliseconds(200))
        async let again1 = first.call(Router.echoMethod, EchoRequest(payload: large, delayMs: 200), as: EchoRequest.self)
        async let again2 = second.call(Router.echoMethod, EchoRequest(payload: large, delayMs: 200), as: EchoRequest.self)
        #expect(try await again1.payload == large)
        #expect(try await again2.payload == large)
        await first.close()
        await second.close()
        await third.close()
        try await server.stop()
    }

    /// A reply counts against `limits.max_request_bytes_in_flight` until it has gone to the socket:
    /// a client that sends calls and reads none of their replies makes other calls wait for room
    /// (refused `RESOURCE_EXHAUSTED`), instead of the node keeping its replies beyond the bound,
    /// and the room comes back when that connection closes.
    @Test func repliesNotYetSentCountAgainstTheBytesInFlight() async throws {
        let reply = [UInt8](repeating: 9, count: 1 << 20)
        let server = try await TestServer.start {
            $0.maxFrameBytes = 2 << 20
            $0.maxRequestBytesInFlight = 4 << 20
        } routes: { router in
            router.registerEcho()
            router.async("/countersign.testing/Large") { (_: EchoRequest, _: CallContext) in EchoRequest(payload: reply) }
        }
        let hoarder = try await RawConnection.connect(port: server.port, identity: "orchestrator", receiveBuffer: 4096)
        try await hoarder.send(Frame.bytes(of: Envelope(callID: 1, method: Method.health)))
        #expect(await server.eventually { (try? hoarder.envelopes().count) == 1 })
        try await hoarder.channel.setOption(ChannelOptions.autoRead, value: false)
        // Twelve calls of a few bytes, each answered with 1 MiB that the hoarder never reads.
        try await hoarder.send((2...41).flatMap { i in
            Frame.bytes(of: Envelope(callID: UInt64(i), method: "/countersign.testing/Large", body: EchoRequest(payload: [1]).protobufBytes()))
        })
        let client = try await server.client("orchestrator")
        /// A small call on another connection: nil when answered, its status when refused.
        func another() async throws -> Status? {
            do {
                #expect(try await client.call(Router.echoMethod, EchoRequest(payload: [1, 2, 3]), as: EchoRequest.self).payload == [1, 2, 3])
                return nil
            } catch let status as Status {
                return status
            }
        }
        var refused: Status?
        let end = ContinuousClock.now + .seconds(10)
        while refused == nil, ContinuousClock.now < end {
            refused = try await another()
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(refused?.code == .resourceExhausted, "the unread replies did not stop other calls")
        #expect(refused?.message.contains("replies not yet sent") == true, "\(refused?.message ?? "")")

        await hoarder.close()
        var answered = false
        while !answered, ContinuousClock.now < end + .seconds(10) {
            answered = try await another() == nil
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(answered, "the closed connection's replies were not given back")
        await client.close()
        try await server.stop()
    }

    /// One connection holds at most an eighth of `limits.max_request_bytes_in_flight` (or a frame,
    /// if more): a client that stops reading its replies has its own further calls refused, and
    /// leaves the rest of the bound to the others, whose calls go on.
    @Test func oneConnectionHoldsAtMostItsShareOfTheBytesInFlight() async throws {
        let server = try await TestServer.start {
            $0.maxFrameBytes = 1 << 20
            $0.maxRequestBytesInFlight = 16 << 20  // a connection's share: 2 MiB
        } routes: { $0.registerEcho() }
        let hoarder = try await RawConnection.connect(port: server.port, identity: "orchestrator", receiveBuffer: 4096)
        try await hoarder.send(Frame.bytes(of: Envelope(callID: 1, method: Method.health)))
        #expect(await server.eventually { (try? hoarder.envelopes().count) == 1 })
        try await hoarder.channel.setOption(ChannelOptions.autoRead, value: false)
        // Forty echo calls of 512 KiB, their replies as large, none read: 20 MiB, more than the node's
        // 16 MiB, which the hoarder alone would fill; three fill its share, and take 2 s to answer.
        // Not awaited: once the replies back up, the server stops reading what is left of them.
        let payload = [UInt8](repeating: 5, count: 512 << 10)
        let calls = (2...41).flatMap { i in
            Frame.bytes(of: Envelope(callID: UInt64(i), method: Router.echoMethod, body: EchoRequest(payload: payload, delayMs: 2000).protobufBytes()))
        }
        var buffer = hoarder.channel.allocator.buffer(capacity: calls.count)
        buffer.writeBytes(calls)
        hoarder.channel.writeAndFlush(buffer, promise: nil)
        try await Task.sleep(for: .milliseconds(500))
        let client = try await server.client("orchestrator")
        for _ in 0..<3 {
            let echoed = try await client.call(Router.echoMethod, EchoRequest(payload: payload), as: EchoRequest.self)
            #expect(echoed.payload == payload, "another client's calls go on beside the one that does not read")
        }
        try await hoarder.channel.setOption(ChannelOptions.autoRead, value: true)
        #expect(await server.eventually(timeout: .seconds(60)) { (try? hoarder.envelopes().count) == 41 })
        let replies = try hoarder.envelopes().filter { $0.callID > 1 }
        let refused = replies.filter { $0.status?.code == .resourceExhausted }
        #expect(!refused.isEmpty, "the hoarder's calls beyond its share are refused")
        #expect(refused.allSatisfy { $0.status?.message.contains("this connection already holds") == true },
                "\(refused.first?.status?.message ?? "")")
        #expect(refused.first?.status?.message.contains("its share (2097152: an eighth of limits.max_request_bytes_in_flight") == true)
        #expect(replies.count - refused.count >= 3, "the calls within its share (three of 512 KiB and a little) are answered")
        await hoarder.close()
        await client.close()
        try await server.stop()
    }

    /// What connections have sent of frames not yet complete is bounded node-wide (by the size of
    /// `limits.max_request_bytes_in_flight`, in a pool of its own): a frame holds its declared size
    /// from the read that leaves it incomplete, a frame that does not fit is not read until the
    /// room is there, and a connection closed in the middle of a frame gives its place back.
    @Test func framesStillArrivingAreBoundedAcrossConnections() async throws {
        let server = try await TestServer.start {
            $0.maxFrameBytes = 2 << 20
            $0.maxRequestBytesInFlight = 4 << 20  // 4,194,304 bytes
        } routes: { $0.registerEcho() }
        func frame(_ callID: UInt64, _ size: Int) -> [UInt8] {
            Frame.bytes(of: Envelope(callID: callID, method: Router.echoMethod,
                                     body: EchoRequest(payload: [UInt8](repeating: UInt8(callID), count: size)).protobufBytes()))
        }
        func connect() async throws -> RawConnection {
            let connection = try await RawConnection.connect(port: server.port, identity: "orchestrator")
            try await connection.send(Frame.bytes(of: Envelope(callID: 1, method: Method.health)))
            #expect(await server.eventually { (try? connection.envelopes().count) == 1 })
            return connection
        }
        func reply(_ connection: RawConnection, _ callID: UInt64) -> Envelope? {
            (try? connection.envelopes())?.first { $0.callID == callID }
        }
        func isOK(_ envelope: Envelope?) -> Bool { envelope != nil && (envelope?.status?.code ?? .ok) == .ok }
        func sendWithoutWaiting(_ connection: RawConnection, _ bytes: [UInt8]) {
            var buffer = connection.channel.allocator.buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            connection.channel.writeAndFlush(buffer, promise: nil)
        }
        // Two frames of 1.5 MB, all but their last 1,000 bytes sent: 3 MB of the 4 MiB held.
        let first = try await connect(), second = try await connect(), third = try await connect()
        let a = frame(2, 1_500_000), b = frame(3, 1_500_000)
        try await first.send(Array(a.dropLast(1000)))
        try await second.send(Array(b.dropLast(1000)))
        try await Task.sleep(for: .milliseconds(300))

        // A whole frame of 1.3 MB from a third connection does not fit beside them: it is not read.
        sendWithoutWaiting(third, frame(5, 1_300_000))
        try await Task.sleep(for: .seconds(1))
        let answeredAtOnce = reply(third, 5) != nil
        #expect(!answeredAtOnce, "a frame beyond the bound was read and answered")

        // The second frame's last bytes come: it is answered, and gives its place to the third.
        try await second.send(Array(b.suffix(1000)))
        #expect(await server.eventually(timeout: .seconds(10)) { reply(second, 3) != nil })
        #expect(isOK(reply(second, 3)), "\(reply(second, 3)?.status?.message ?? "")")
        #expect(try reply(second, 3).map { try EchoRequest(protobuf: $0.body).payload.count } == 1_500_000)
        #expect(await server.eventually(timeout: .seconds(10)) { reply(third, 5) != nil })
        #expect(isOK(reply(third, 5)), "\(reply(third, 5)?.status?.message ?? "")")

        // The first connection closes in the middle of its frame: its place comes back, and two
        // frames of 1.9 MB fit at once again: the third's is answered while the second's still
        // arrives.
        await first.close()
        try await Task.sleep(for: .milliseconds(300))
        let d = frame(6, 1_900_000)
        try await second.send(Array(d.dropLast(1000)))
        try await Task.sleep(for: .milliseconds(300))
        sendWithoutWaiting(third, frame(7, 1_900_000))
        #expect(await server.eventually(timeout: .seconds(10)) { reply(third, 7) != nil }, "a closed connection's frame kept its place")
        #expect(isOK(reply(third, 7)))
        try await second.send(Array(d.suffix(1000)))
        #expect(await server.eventually(timeout: .seconds(10)) { reply(second, 6) != nil })
        #expect(isOK(reply(second, 6)))
        await second.close()
        await third.close()
        try await server.stop()
    }

    @Test func deadlineExceeded() async throws {
        let server = try await TestServer.start { _ in } routes: { $0.registerEcho() }
        let client = try await server.client("orchestrator")
        let error = await #expect(throws: Status.self) {
            _ = try await client.call(Router.echoMethod, EchoRequest(payload: [1], delayMs: 3000), as: EchoRequest.self,
                                      deadline: .milliseconds(100))
        }
        #expect(error?.code == .deadlineExceeded)
        #expect(try await client.health().principal == "orchestrator")
        await client.close()
        try await server.stop()
    }

    /// The server keeps one deadline timer per connection, armed for the earliest deadline in
    /// flight: a call with an earlier deadline than those before it, and a call whose deadline
    /// falls after the timer armed for an earlier, finished call, are each answered by the server
    /// at their own deadline, not at another's and not when their handler ends.
    @Test func everyCallInFlightEndsAtItsOwnDeadline() async throws {
        let server = try await TestServer.start { _ in } routes: { $0.registerEcho() }
        let client = try await server.client("orchestrator")
        func timedOut(delayMs: UInt32, deadlineMs: Int64) async -> (Status?, Duration) {
            let start = ContinuousClock.now
            do {
                _ = try await client.call(Router.echoMethod, EchoRequest(payload: [1], delayMs: delayMs), as: EchoRequest.self,
                                          deadline: .milliseconds(deadlineMs))
                return (nil, ContinuousClock.now - start)
            } catch {
                return (error as? Status, ContinuousClock.now - start)
            }
        }
        // A finished call leaves the timer armed for its deadline (600 ms); the next call's
        // deadline (1,200 ms) is later, so the timer must be armed again when it fires.
        _ = try await client.call(Router.echoMethod, EchoRequest(payload: [1], delayMs: 0), as: EchoRequest.self,
                                  deadline: .milliseconds(600))
        let late = await timedOut(delayMs: 4000, deadlineMs: 1200)
        // A call with an earlier deadline than the one the timer is armed for, beside a call
        // that is answered in time.
        async let long = timedOut(delayMs: 4000, deadlineMs: 2500)
        try await Task.sleep(for: .milliseconds(50))
        async let early = timedOut(delayMs: 4000, deadlineMs: 200)
        async let answered = timedOut(delayMs: 100, deadlineMs: 5000)
        let (longResult, earlyResult, answeredResult) = await (long, early, answered)
        #expect(answeredResult.0 == nil)
        for ((status, took), deadline) in [(late, 1200), (earlyResult, 200), (longResult, 2500)] {
            #expect(status?.code == .deadlineExceeded)
            #expect(status?.message.contains("no answer within \(deadline) ms") == true, "the server's answer: \(String(describing: status))")
            #expect(took >= .milliseconds(deadline) && took < .milliseconds(deadline + 1000))
        }
        #expect(try await client.health().principal == "orchestrator")
        await client.close()
        try await server.stop()
    }

    /// A server that completes the handshake and then never answers: the client gives each call
    /// up by itself, shortly after its deadline, each at its own time (one timer serves the
    /// connection), and the connection still carries calls afterwards.
    @Test func theClientGivesUpOnAServerThatNeverAnswers() async throws {
        let configuration = try CountersignConfiguration.load(path: TestEnvironment.configPath)
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(configuration.tls.certificatePath).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: configuration.tls.privateKeyPath, format: .pem)))
        tls.minimumTLSVersion = .tlsv13
        let context = try NIOSSLContext(configuration: tls)
        let silent = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context)) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let client = try await CountersignClient.connect(ClientConfiguration(
            host: "127.0.0.1", port: try #require(silent.localAddress?.port),
            certificatePath: TestEnvironment.pki("orchestrator.crt"), privateKeyPath: TestEnvironment.pki("orchestrator.key"),
            trustRootsPath: configuration.tls.clientCAPath, serverSPKISHA256: try #require(configuration.tls.serverSPKISHA256)))
        func givenUp(deadlineMs: Int64) async -> (Status?, Duration) {
            let start = ContinuousClock.now
            do {
                _ = try await client.health(deadline: .milliseconds(deadlineMs))
                return (nil, ContinuousClock.now - start)
            } catch {
                return (error as? Status, ContinuousClock.now - start)
            }
        }
        async let later = givenUp(deadlineMs: 900)
        try await Task.sleep(for: .milliseconds(50))
        async let earlier = givenUp(deadlineMs: 100)
        let (laterResult, earlierResult) = await (later, earlier)
        let again = await givenUp(deadlineMs: 100)
        // The client allows the server 1 s beyond the deadline it sends.
        for ((status, took), deadline) in [(earlierResult, 100), (laterResult, 900), (again, 100)] {
            #expect(status?.code == .deadlineExceeded)
            #expect(status?.message == "no reply within \(deadline) ms")
            #expect(took >= .milliseconds(deadline + 1000) && took < .milliseconds(deadline + 1600))
        }
        #expect(client.isActive)
        await client.close()
        try await silent.close()
    }

    @Test func gracefulShutdownFinishesCallsInFlightAndRefusesNewOnes() async throws {
        let server = try await TestServer.start { _ in } routes: { $0.registerEcho() }
        let client = try await server.client("orchestrator")
        async let slow = client.call(Router.echoMethod, EchoRequest(payload: [42], delayMs: 600), as: EchoRequest.self)
        try await Task.sleep(for: .milliseconds(100))
        server.server.shutdown()
        try await Task.sleep(for: .milliseconds(100))
        let refused = await #expect(throws: Status.self) { _ = try await client.health() }
        #expect(refused?.code == .unavailable)
        #expect(try await slow.payload == [42])
        await #expect(throws: Status.self) { _ = try await server.client("orchestrator") }
        try await server.stop()
    }

    @Test func connectionLimit() async throws {
        let server = try await TestServer.start { $0.maxConnections = 2 }
        let a = try await server.client("orchestrator")
        let b = try await server.client("auditor")
        await #expect(throws: Status.self) {
            let c = try await server.client("officer-1")
            _ = try await c.health()
        }
        #expect(try await a.health().principal == "orchestrator")
        await a.close()
        await b.close()
        try await server.stop()
    }
}
