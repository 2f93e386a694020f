import CountersignConfig
import CountersignWire
import Logging
import Metrics
import NIOCore
import NIOSSL
import NIOTLS

/// Sent down every connection's pipeline when the server begins to shut down: calls in flight
/// finish, new calls are refused with `UNAVAILABLE`, and the connection closes once idle.
struct DrainEvent: Sendable {}

/// Per-connection state shared by the TLS pin check and the connection handler. Only touched on the
/// connection's event loop.
final class ConnectionIdentity: @unchecked Sendable {
    var principal: Principal?
    var rejection: HandshakeRejection?
}

/// Serves one connection: frames in, envelopes decoded, calls routed (many in flight, matched by
/// `call_id`), replies framed out. Enforces the handshake timeout, the idle timeout (a connection
/// that completes no frame in time is closed however many bytes trickle in), the per-connection
/// call limit, the node-wide bound on request and reply bytes in flight and call deadlines.
final class ConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let identity: ConnectionIdentity
    private let router: Router
    private let limits: LimitSettings
    private let requestBytes: RequestBytesInFlight
    private var logger: Logger
    private let handshakeFailures: @Sendable (HandshakeRejection) -> Void

    private var handshakeDone = false
    private var handshakeTimer: Scheduled<Void>?
    /// Calls in flight by `call_id`, with their deadlines (one timer for all of them).
    private var inFlight = CallDeadlines<CallInFlight>()
    /// The idle timer is not re-armed per frame either (an event loop cancels a timer by a linear
    /// search of its timers): it is armed once and, when it fires early (frames came since), again
    /// for what is left.
    private var idleTimer: Scheduled<Void>?
    private var lastFrame = NIODeadline.now()
    private var draining = false
    private var closing = false
    private var pendingFlush = false
    /// Reply bytes written since the last flush: flushed at 64 KiB, so that the channel's
    /// writability (which counts only what reached it) is true to what waits for the client.
    private var unflushedBytes = 0
    /// Frames that wait: read while the channel was not writable (the client is not reading its
    /// replies, so no more are made for it), or while `max_calls_per_connection` calls were in
    /// flight. They are served in order once both allow it; meanwhile the connection is not read
    /// (``read(context:)``), so this holds at most what the last read brought.
    private var heldFrames = CircularBuffer<ByteBuffer>()
    /// A read the channel asked for while frames were held, passed on once they are served.
    private var readPending = false
    /// This connection's part of ``requestBytes``: its calls' requests and their unsent replies.
    private var heldBytes = 0

    init(identity: ConnectionIdentity, router: Router, limits: LimitSettings, requestBytes: RequestBytesInFlight,
         logger: Logger, handshakeFailures: @escaping @Sendable (HandshakeRejection) -> Void) {
        self.identity = identity
        self.router = router
        self.limits = limits
        self.requestBytes = requestBytes
        self.logger = logger
        self.handshakeFailures = handshakeFailures
    }

    // MARK: lifecycle

    func channelActive(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
        handshakeTimer = context.eventLoop.scheduleTask(in: .milliseconds(Int64(limits.handshakeTimeoutMs))) {
            let handler = loopBound.value
            guard !handler.handshakeDone else { return }
            handler.rejectHandshake(.timeout, detail: "no completed handshake within \(handler.limits.handshakeTimeoutMs) ms", context: ctx.value)
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        handshakeTimer?.cancel()
        idleTimer?.cancel()
        _ = inFlight.removeAll()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls {
            handshakeDone = true
            handshakeTimer?.cancel()
            guard let principal = identity.principal else {
                // The pin check runs inside the handshake; reaching here without a principal is a bug.
                rejectHandshake(.unpinnedKey, detail: "handshake completed without a pinned principal", context: context)
                return
            }
            logger[metadataKey: "cs.principal"] = "\(principal.id)"
            logger.debug("connection authenticated", metadata: ["cs.role": "\(principal.role.rawValue)"])
            lastFrame = .now()
            armIdleTimer(in: .milliseconds(Int64(limits.idleTimeoutMs)), context: context)
        } else if event is DrainEvent {
            draining = true
            if inFlight.isEmpty { close(context: context) }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let frameError = error as? FrameError {
            logger.notice("refusing frame; closing connection", metadata: ["cs.reason": "\(frameError)"])
            fail(context: context, status: frameError.status)
            return
        }
        if !handshakeDone {
            let reason = identity.rejection ?? HandshakeRejection.classify(error)
            rejectHandshake(reason, detail: String(describing: error), context: context)
            return
        }
        if error is IOError || (error as? NIOSSLError) == .uncleanShutdown {
            logger.debug("connection I/O error", metadata: ["cs.error": "\(error)"])
        } else {
            logger.notice("connection error; closing", metadata: ["cs.error": "\(String(reflecting: error))"])
        }
        close(context: context)
    }

    private func rejectHandshake(_ reason: HandshakeRejection, detail: String, context: ChannelHandlerContext) {
        guard !closing else { return }
        identity.rejection = reason
        handshakeFailures(reason)
        logger.warning("TLS handshake refused", metadata: [
            "cs.reason": "\(reason.rawValue)", "cs.detail": "\(detail)",
            "cs.peer": "\(context.remoteAddress?.description ?? "?")",
        ])
        close(context: context)
    }

    // MARK: frames

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing, identity.principal != nil else { return }
        lastFrame = .now()
        if !heldFrames.isEmpty || !mayServe(context: context) {
            heldFrames.append(unwrapInboundIn(data))
            return
        }
        serve(unwrapInboundIn(data), context: context)
    }

    /// Whether a new call may be served now: its reply has somewhere to go, and the connection
    /// has room for one more call in flight.
    private func mayServe(context: ChannelHandlerContext) -> Bool {
        context.channel.isWritable && inFlight.count < limits.maxCallsPerConnection
    }

    /// Serves the held frames that may be served now, and reads again once none is left.
    private func serveHeldFrames(context: ChannelHandlerContext) {
        while !closing, !heldFrames.isEmpty, mayServe(context: context) {
            serve(heldFrames.removeFirst(), context: context)
        }
        flushIfNeeded(context: context)
        if heldFrames.isEmpty, readPending, !closing {
            readPending = false
            context.read()
        }
    }

    func read(context: ChannelHandlerContext) {
        if heldFrames.isEmpty {
            context.read()
        } else {
            readPending = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        serveHeldFrames(context: context)
        context.fireChannelWritabilityChanged()
    }

    /// Decodes one frame's envelope and answers it, or starts its call.
    private func serve(_ frame: ByteBuffer, context: ChannelHandlerContext) {
        guard let principal = identity.principal else { return }
        var frame = frame
        let bytes = frame.readBytes(length: frame.readableBytes) ?? []
        let envelope: Envelope
        do {
            envelope = try Envelope(protobuf: bytes, limits: ProtoLimits(maxMessageBytes: limits.maxFrameBytes))
        } catch {
            logger.notice("unparsable envelope; closing connection", metadata: ["cs.error": "\(error)"])
            fail(context: context, status: Status(.invalidArgument, "unparsable envelope: \(error)"))
            return
        }
        let callID = envelope.callID
        if draining {
            reply(context: context, callID: callID, status: Status(.unavailable, "the server is shutting down; retry on a new connection"))
            return
        }
        guard !inFlight.contains(callID) else {
            reply(context: context, callID: callID, status: Status(.invalidArgument, "call_id \(callID) is already in flight"))
            return
        }
        guard let route = router.route(for: envelope.method) else {
            reply(context: context, callID: callID, status: Status(.unimplemented, "unknown method '\(envelope.method)'"))
            return
        }
        let deadlineMs = envelope.deadlineMs == 0 ? limits.defaultDeadlineMs : Int(envelope.deadlineMs)
        var callLogger = logger
        callLogger[metadataKey: "cs.method"] = "\(envelope.method)"
        callLogger[metadataKey: "cs.call_id"] = "\(callID)"
        let call = CallContext(principal: principal, method: envelope.method, callID: callID,
                               deadline: .now + .milliseconds(deadlineMs), logger: callLogger)
        if let roles = route.roles, !roles.contains(principal.role) {
            let status = Status(.permissionDenied, "\(principal.role.rawValue) '\(principal.id)' may not call \(envelope.method)")
            callLogger.notice("call refused", metadata: ["cs.reason": "\(status.message)"])
            reply(context: context, callID: callID, status: status)
            if let onRefusal = router.onRefusal { Task { await onRefusal(call, status) } }
            return
        }
        switch route.handler {
        case .inline(let handler):
            do {
                reply(context: context, callID: callID, body: try handler(envelope.body, call))
            } catch {
                reply(context: context, callID: callID, status: status(for: error, call: call))
            }
        case .async(let handler):
            let size = envelope.body.count
            if let refusal = requestBytes.reserve(size, connectionHeld: heldBytes) {
                reply(context: context, callID: callID, status: refusal)
                return
            }
            heldBytes += size
            start(handler, body: envelope.body, reserved: size, call: call, deadlineMs: deadlineMs, context: context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushIfNeeded(context: context)
        context.fireChannelReadComplete()
    }

    // MARK: calls

    /// Runs an async call in a task of its own. The `reserved` bytes of ``requestBytes`` become its
    /// reply's, held until the reply has gone to the socket (a client that does not read its replies
    /// keeps them in the node's memory, not its own); they are given back when the task ends if the
    /// deadline answered the call first or the connection has closed.
    private func start(_ handler: @escaping @Sendable ([UInt8], CallContext) async throws -> [UInt8],
                       body: [UInt8], reserved: Int, call: CallContext, deadlineMs: Int, context: ChannelHandlerContext) {
        let loop = context.eventLoop
        let bound = NIOLoopBound(self, eventLoop: loop)
        let ctx = NIOLoopBound(context, eventLoop: loop)
        let callID = call.callID
        let task = Task {
            let result: Result<[UInt8], any Error>
            do { result = .success(try await handler(body, call)) } catch { result = .failure(error) }
            loop.execute {
                let handler = bound.value
                guard handler.inFlight.remove(callID) != nil else {  // the deadline won, or the connection closed
                    handler.release(reserved)
                    return
                }
                switch result {
                case .success(let bytes): handler.reply(context: ctx.value, callID: callID, body: bytes, holding: reserved)
                case .failure(let error):
                    handler.reply(context: ctx.value, callID: callID, status: handler.status(for: error, call: call), holding: reserved)
                }
                handler.flushIfNeeded(context: ctx.value)
                handler.afterCall(context: ctx.value)
                handler.serveHeldFrames(context: ctx.value)
            }
        }
        inFlight.add(callID, deadline: .now() + .milliseconds(Int64(deadlineMs)),
                     CallInFlight(deadlineMs: deadlineMs, task: task, logger: call.logger),
                     on: loop, expire: expiry(context: context))
    }

    /// What the deadline timer runs when it fires.
    private func expiry(context: ChannelHandlerContext) -> @Sendable () -> Void {
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
        return { bound.value.expireCalls(context: ctx.value) }
    }

    /// Answers every call whose deadline has passed with `DEADLINE_EXCEEDED` (cancelling its
    /// task; a late result is dropped).
    private func expireCalls(context: ChannelHandlerContext) {
        for (callID, call) in inFlight.expire(on: context.eventLoop, expiry(context: context)) {
            call.task.cancel()
            call.logger.notice("deadline exceeded", metadata: ["cs.deadline_ms": "\(call.deadlineMs)"])
            reply(context: context, callID: callID, status: Status(.deadlineExceeded, "no answer within \(call.deadlineMs) ms"))
        }
        flushIfNeeded(context: context)
        afterCall(context: context)
        serveHeldFrames(context: context)
    }

    private func afterCall(context: ChannelHandlerContext) {
        if draining && inFlight.isEmpty { close(context: context) }
    }

    private func status(for error: any Error, call: CallContext) -> Status {
        let status = Status.from(error)
        if status.code == .internal {
            call.logger.error("call failed", metadata: ["cs.error": "\(String(reflecting: error))"])
        }
        return status
    }

    // MARK: writing

    /// Writes a call's reply. With `holding`, the bytes of ``requestBytes`` reserved for an async
    /// call (its request body's, perhaps none) are exchanged for the reply frame's size, released
    /// once the frame has been written to the socket, or has failed to be because the connection
    /// closed. Replies of inline calls and refusals are small and not counted.
    private func reply(context: ChannelHandlerContext, callID: UInt64, body: [UInt8], holding reserved: Int? = nil) {
        write(context: context, Envelope(callID: callID, body: body, status: .ok), holding: reserved)
    }

    private func reply(context: ChannelHandlerContext, callID: UInt64, status: Status, holding reserved: Int? = nil) {
        write(context: context, Envelope(callID: callID, status: status), holding: reserved)
    }

    private func write(context: ChannelHandlerContext, _ envelope: Envelope, holding reserved: Int? = nil) {
        guard !closing else {
            if let reserved { release(reserved) }
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: 64)
        Frame.write(envelope, into: &buffer)
        let size = buffer.readableBytes - Frame.headerSize
        if size > limits.maxFrameBytes {
            // The client would refuse the frame and close the connection, failing every other call
            // on it: the call gets the reason instead. (The decision service checks its replies
            // before signing; this holds for every route.)
            logger.error("reply above the frame limit", metadata: ["cs.call_id": "\(envelope.callID)", "cs.bytes": "\(size)"])
            buffer.clear()
            Frame.write(Envelope(callID: envelope.callID, status: Status(.resourceExhausted,
                "the reply would be \(size) bytes, above limits.max_frame_bytes (\(limits.maxFrameBytes))")), into: &buffer)
        }
        unflushedBytes += buffer.readableBytes
        if let reserved {
            let held = buffer.readableBytes
            requestBytes.exchange(reserved, for: held)
            heldBytes += held - reserved
            let written = context.eventLoop.makePromise(of: Void.self)
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            written.futureResult.whenComplete { _ in bound.value.release(held) }
            context.write(wrapOutboundOut(buffer), promise: written)
        } else {
            context.write(wrapOutboundOut(buffer), promise: nil)
        }
        pendingFlush = true
        if unflushedBytes >= 64 << 10 { flushIfNeeded(context: context) }
    }

    /// Gives back bytes of ``requestBytes`` that this connection held.
    private func release(_ bytes: Int) {
        requestBytes.release(bytes)
        heldBytes -= bytes
    }

    private func flushIfNeeded(context: ChannelHandlerContext) {
        if pendingFlush {
            pendingFlush = false
            unflushedBytes = 0
            context.flush()
        }
    }

    /// Answers with `call_id` 0 and closes: for input that breaks the framing or the envelope.
    private func fail(context: ChannelHandlerContext, status: Status) {
        write(context: context, Envelope(callID: 0, status: status))
        flushIfNeeded(context: context)
        close(context: context)
    }

    private func close(context: ChannelHandlerContext) {
        guard !closing else { return }
        closing = true
        idleTimer?.cancel()
        context.close(promise: nil)
    }

    /// Closes the connection once no frame has come for the idle timeout and no call is in flight.
    private func armIdleTimer(in delay: TimeAmount, context: ChannelHandlerContext) {
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
        idleTimer = context.eventLoop.scheduleTask(in: delay) {
            let handler = bound.value
            let timeout = TimeAmount.milliseconds(Int64(handler.limits.idleTimeoutMs))
            let idleUntil = handler.lastFrame + timeout
            let now = NIODeadline.now()
            if now < idleUntil {
                handler.armIdleTimer(in: idleUntil - now, context: ctx.value)  // a frame came since
            } else if handler.inFlight.isEmpty {
                handler.logger.info("closing idle connection", metadata: ["cs.idle_timeout_ms": "\(handler.limits.idleTimeoutMs)"])
                handler.close(context: ctx.value)
            } else {
                handler.armIdleTimer(in: timeout, context: ctx.value)
            }
        }
    }
}

/// A call being answered: its task, cancelled when the deadline passes first.
private struct CallInFlight {
    var deadlineMs: Int
    var task: Task<Void, Never>
    var logger: Logger
}
