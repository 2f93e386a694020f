import CountersignWire
import Metrics
import NIOConcurrencyHelpers
import NIOCore

/// The bytes of frames still arriving, on the whole node, against a bound of their own (the size of
/// `limits.max_request_bytes_in_flight`).
///
/// The frame decoder keeps what a connection has sent of a frame until its last byte has come, up to
/// `limits.max_frame_bytes` per connection and before any call exists to count them: a thousand
/// connections each sending most of a 4 MiB frame made the node hold 4 GiB. Calls and their replies
/// are bounded by ``RequestBytesInFlight``, which refuses a call beyond it at once; frames still
/// arriving are bounded here, by flow control instead (``FrameAdmission``): the node holds at most
/// about twice `limits.max_request_bytes_in_flight` of requests, replies and frames together.
final class IncompleteFrameBytes: Sendable {
    let limit: Int
    private let held = NIOLockedValueBox(0)

    init(limit: Int) {
        self.limit = limit
    }

    /// Takes `bytes` if they fit beside what the frames still arriving hold.
    func admit(_ bytes: Int) -> Bool {
        held.withLockedValue { held in
            guard held + bytes <= limit else { return false }
            held += bytes
            return true
        }
    }

    func release(_ bytes: Int) {
        held.withLockedValue { $0 -= bytes }
    }
}

/// Admits a frame that is still arriving into ``IncompleteFrameBytes`` at its declared size, from
/// the read that leaves it incomplete until its last byte has come; a connection whose incomplete
/// frame does not fit is not read until it does.
///
/// A frame admitted keeps being read, so it completes (or its connection goes quiet and the idle
/// timeout closes it), and gives its place back: a frame that waits is admitted as soon as the room
/// is there. Waiting is TCP back-pressure: the client's send stalls, nothing is refused. Each
/// connection holds at most one frame's place, and what its last read brought besides. A frame that
/// arrives whole in one read is not counted here; once complete, every frame's call is counted by
/// ``RequestBytesInFlight``.
///
/// Connections left unread are counted in
/// `countersign_reads_paused_total{reason="incomplete_frame_bytes"}`. Sits between TLS and the frame
/// decoder, walks the frame headers in the byte stream and leaves the decoding to it (a header the
/// decoder will refuse, flags or size, ends the counting: the decoder closes the connection).
final class FrameAdmission: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// How often a connection left unread asks again for its frame's place.
    static let retryInterval = TimeAmount.milliseconds(10)

    private let frameBytes: IncompleteFrameBytes
    private let maxFrameBytes: Int
    private let pauses: Counter

    /// The header of the frame being received, as far as it has come (up to ``Frame/headerSize`` bytes).
    private var header: UInt64 = 0
    private var headerBytes = 0
    /// The declared size of the frame whose body is arriving, and how much of it is still to come.
    private var declared = 0
    private var remaining = 0
    /// What this frame holds of ``frameBytes`` (its declared size once admitted, else 0).
    private var admitted = 0
    /// A header the decoder will refuse was seen: nothing more is counted.
    private var refused = false
    /// The connection has closed: nothing more is admitted.
    private var closed = false

    private var paused = false
    private var readPending = false
    private var retry: Scheduled<Void>?

    init(frameBytes: IncompleteFrameBytes, maxFrameBytes: Int, pauses: Counter) {
        self.frameBytes = frameBytes
        self.maxFrameBytes = maxFrameBytes
        self.pauses = pauses
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !refused { walk(unwrapInboundIn(data)) }
        context.fireChannelRead(data)
        admitIncompleteFrame(context: context)
    }

    func read(context: ChannelHandlerContext) {
        if paused {
            readPending = true
        } else {
            context.read()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        stop()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stop()
    }

    private func stop() {
        closed = true
        retry?.cancel()
        retry = nil
        giveBack()
    }

    /// Follows the frames through `bytes`: headers, then bodies. A frame that completes gives its
    /// place back.
    private func walk(_ bytes: ByteBuffer) {
        var index = bytes.readerIndex
        let end = bytes.writerIndex
        while index < end {
            if remaining > 0 {
                let take = min(remaining, end - index)
                index += take
                remaining -= take
                if remaining == 0 { giveBack() }
                continue
            }
            header = header << 8 | UInt64(bytes.getInteger(at: index, as: UInt8.self)!)
            headerBytes += 1
            index += 1
            guard headerBytes == Frame.headerSize else { continue }
            let flags = UInt8(truncatingIfNeeded: header >> 32), declaredLength = UInt32(truncatingIfNeeded: header)
            header = 0
            headerBytes = 0
            guard let length = try? FrameDecoder.payloadSize(flags: flags, length: declaredLength, maxFrameBytes: maxFrameBytes) else {
                refused = true
                giveBack()
                return
            }
            declared = length
            remaining = length
        }
    }

    /// Admits the frame left incomplete by the last read, if it is not yet; leaves the connection
    /// unread while it does not fit, and reads it again once it does (or once no frame waits).
    private func admitIncompleteFrame(context: ChannelHandlerContext) {
        guard !closed else { return }
        if !refused, remaining > 0, admitted == 0 {
            guard frameBytes.admit(declared) else {
                if !paused {
                    paused = true
                    pauses.increment()
                }
                scheduleRetry(context: context)
                return
            }
            admitted = declared
        }
        guard paused else { return }
        paused = false
        if readPending {
            readPending = false
            context.read()
        }
    }

    private func scheduleRetry(context: ChannelHandlerContext) {
        guard retry == nil else { return }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
        retry = context.eventLoop.scheduleTask(in: Self.retryInterval) {
            handler.value.retry = nil
            handler.value.admitIncompleteFrame(context: ctx.value)
        }
    }

    private func giveBack() {
        guard admitted > 0 else { return }
        frameBytes.release(admitted)
        admitted = 0
    }
}
