@testable import CountersignWire
import CountersignRandom
import NIOCore
import NIOEmbedded
import Testing

extension RandomNumberGenerator {
    mutating func bytes(_ max: Int) -> [UInt8] {
        (0..<Int.random(in: 0...max, using: &self)).map { _ in UInt8.random(in: 0...255, using: &self) }
    }
    mutating func string(_ max: Int) -> String {
        let alphabet = Array("abcXYZ019 -_/.:@é✓𝄞\u{0}\n")
        return String((0..<Int.random(in: 0...max, using: &self)).map { _ in alphabet.randomElement(using: &self)! })
    }
    mutating func pick<T>(_ values: [T]) -> T { values.randomElement(using: &self)! }
}

enum RandomMessages {
    static func decision(_ g: inout SplitMix64) -> Decision {
        var d = Decision()
        d.requestID = g.string(40)
        d.verdict = Verdict(rawValue: Int32.random(in: -2...5, using: &g))
        d.findings = (0..<Int.random(in: 0...6, using: &g)).map { _ in
            Finding(rule: g.string(20), enforcement: Enforcement(rawValue: Int32.random(in: 0...6, using: &g)),
                    address: g.string(60), path: g.string(30), message: g.string(200), before: g.string(20),
                    after: g.string(20), remedy: g.string(50), overridableBy: (0..<Int.random(in: 0...3, using: &g)).map { _ in g.string(10) })
        }
        d.summary = g.string(300)
        d.cannotOverride = Bool.random(using: &g)
        d.statement = g.bytes(400)
        d.signature = g.bytes(80)
        d.keyID = g.string(64)
        d.ledgerIndex = g.pick([0, 1, UInt64.max, UInt64.random(in: 0...UInt64.max, using: &g)])
        d.payloadType = g.string(50)
        d.findingsOmitted = g.pick([0, 1, UInt32.max, UInt32.random(in: 0...UInt32.max, using: &g)])
        return d
    }

    static func statement(_ g: inout SplitMix64) -> DecisionStatement {
        var s = DecisionStatement()
        s.requestID = g.string(30)
        s.planSHA256 = g.bytes(32)
        s.userRequestSHA256 = g.bytes(32)
        s.policySHA256 = g.bytes(32)
        s.verdict = Verdict(rawValue: Int32.random(in: 0...3, using: &g))
        s.agent = g.string(20)
        s.owner = g.string(30)
        s.keyID = g.string(64)
        s.decidedAtUnixMs = g.pick([0, -1, Int64.min, Int64.max, Int64.random(in: Int64.min...Int64.max, using: &g)])
        s.rules = (0..<Int.random(in: 0...5, using: &g)).map { _ in g.string(20) }
        s.cannotOverride = Bool.random(using: &g)
        s.revision = UInt32.random(in: 0...UInt32.max, using: &g)
        s.confirmations = (0..<Int.random(in: 0...3, using: &g)).map { _ in g.string(20) }
        s.findingsOmitted = g.pick([0, 1, UInt32.max, UInt32.random(in: 0...UInt32.max, using: &g)])
        s.omittedRules = (0..<Int.random(in: 0...3, using: &g)).map { _ in g.string(20) }
        return s
    }

    static func codecTest(_ g: inout SplitMix64) -> CodecTest {
        var m = CodecTest()
        m.fInt32 = Int32.random(in: .min ... .max, using: &g)
        m.fInt64 = Int64.random(in: .min ... .max, using: &g)
        m.fUInt32 = UInt32.random(in: 0 ... .max, using: &g)
        m.fUInt64 = UInt64.random(in: 0 ... .max, using: &g)
        m.fSInt32 = Int32.random(in: .min ... .max, using: &g)
        m.fSInt64 = Int64.random(in: .min ... .max, using: &g)
        m.fFixed32 = UInt32.random(in: 0 ... .max, using: &g)
        m.fFixed64 = UInt64.random(in: 0 ... .max, using: &g)
        m.fSFixed32 = Int32.random(in: .min ... .max, using: &g)
        m.fSFixed64 = Int64.random(in: .min ... .max, using: &g)
        m.fDouble = Double(bitPattern: UInt64.random(in: 0 ... .max, using: &g) & 0x7FEF_FFFF_FFFF_FFFF)
        m.fBool = Bool.random(using: &g)
        m.fString = g.string(30)
        m.fBytes = g.bytes(30)
        m.rInt32 = (0..<Int.random(in: 0...5, using: &g)).map { _ in Int32.random(in: .min ... .max, using: &g) }
        m.rInt32Unpacked = (0..<Int.random(in: 0...5, using: &g)).map { _ in Int32.random(in: .min ... .max, using: &g) }
        m.rSInt64 = (0..<Int.random(in: 0...5, using: &g)).map { _ in Int64.random(in: .min ... .max, using: &g) }
        m.rUInt64Unpacked = (0..<Int.random(in: 0...5, using: &g)).map { _ in UInt64.random(in: 0 ... .max, using: &g) }
        m.rBool = (0..<Int.random(in: 0...5, using: &g)).map { _ in Bool.random(using: &g) }
        var inner = Inner()
        inner.name = g.string(10)
        inner.value = Int64.random(in: .min ... .max, using: &g)
        m.fInner = Bool.random(using: &g) ? inner : nil
        m.rInner = (0..<Int.random(in: 0...3, using: &g)).map { _ in inner }
        return m
    }
}

@Suite struct RobustnessTests {
    /// A status made here never carries more than `Status.maxMessageBytes` of message, however
    /// much of a client's input it quotes, and is cut on a character boundary.
    @Test func aStatusMessageIsBounded() throws {
        let quoted = String(repeating: "é", count: 10_000)  // two bytes each
        let status = Status(.notFound, "no decision for request_id '\(quoted)'")
        #expect(status.message.utf8.count <= Status.maxMessageBytes)
        #expect(status.message.hasPrefix("no decision for request_id 'éé"))
        #expect(status.message.hasSuffix("é…"))
        #expect(Status(.notFound, "short").message == "short")
        let exact = String(repeating: "a", count: Status.maxMessageBytes)
        #expect(Status(.unavailable, exact).message == exact)
    }

    @Test func randomMessagesRoundTrip() throws {
        var g = SplitMix64(seed: 2026)
        for _ in 0..<2000 {
            let d = RandomMessages.decision(&g)
            #expect(try Decision(protobuf: d.protobufBytes()) == d)
            let s = RandomMessages.statement(&g)
            #expect(try DecisionStatement(protobuf: s.protobufBytes()) == s)
            let c = RandomMessages.codecTest(&g)
            #expect(try CodecTest(protobuf: c.protobufBytes()) == c)
            let e = Envelope(callID: g.next(), method: g.string(40), body: d.protobufBytes(),
                             status: Bool.random(using: &g) ? Status(StatusCode(rawValue: UInt32.random(in: 0...20, using: &g)), g.string(30)) : nil,
                             deadlineMs: UInt32.random(in: 0 ... .max, using: &g))
            #expect(try Envelope(protobuf: e.protobufBytes()) == e)
        }
    }

    @Test func encodingIsDeterministic() {
        var g = SplitMix64(seed: 7)
        for _ in 0..<200 {
            let s = RandomMessages.statement(&g)
            #expect(s.protobufBytes() == s.protobufBytes())
            var copy = DecisionStatement()
            copy = s
            #expect(copy.protobufBytes() == s.protobufBytes())
        }
    }

    /// 100,000 random and mutated frames through the frame decoder and every message decoder:
    /// each ends in a value or a typed error, never a crash (a trap would end the test process).
    @Test func hundredThousandHostileFrames() throws {
        var g = SplitMix64(seed: 0xC0FFEE)
        var seeds: [[UInt8]] = []
        for _ in 0..<64 {
            seeds.append(Frame.bytes(of: Envelope(callID: g.next(), method: Method.verifyPlan,
                                                  body: RandomMessages.decision(&g).protobufBytes(), deadlineMs: 100)))
        }
        var decoded = 0, refused = 0
        for i in 0..<100_000 {
            var frame: [UInt8]
            if i % 4 == 0 {
                frame = g.bytes(64)  // pure noise
            } else {
                frame = g.pick(seeds)
                for _ in 0..<Int.random(in: 1...8, using: &g) {
                    guard !frame.isEmpty else { break }
                    let at = Int.random(in: 0..<frame.count, using: &g)
                    switch UInt8.random(in: 0...4, using: &g) {
                    case 0: frame[at] = UInt8.random(in: 0...255, using: &g)                      // flip a byte
                    case 1: frame.removeSubrange(at...)                                          // truncate
                    case 2: frame.insert(contentsOf: g.bytes(8), at: at)                         // insert noise
                    case 3: frame[at] ^= 0x80                                                     // break a varint
                    default: if frame.count > 5 { frame.replaceSubrange(1...4, with: withUnsafeBytes(of: UInt32(frame.count - 5).bigEndian, Array.init)) }  // fix length
                    }
                }
            }
            var decoder = FrameDecoder(maxFrameBytes: 1 << 16)
            var buffer = ByteBuffer(bytes: frame)
            do {
                while let payload = try decoder.decode(buffer: &buffer) {
                    let envelope = try Envelope(protobuf: Array(payload.readableBytesView))
                    _ = try? Decision(protobuf: envelope.body)
                    _ = try? DecisionStatement(protobuf: envelope.body)
                    _ = try? CodecTest(protobuf: envelope.body)
                    decoded += 1
                }
            } catch is FrameError {
                refused += 1
            } catch is ProtoError {
                refused += 1
            }
        }
        #expect(decoded > 1000, "the mutations should leave many frames decodable")
        #expect(refused > 1000, "and many refused")
    }

    @Test func nestingDepthIsBounded() throws {
        // 100 levels of Inner.child: beyond the default depth of 32.
        var bytes: [UInt8] = []
        for _ in 0..<100 {
            var w = ProtoWriter()
            w.writeLengthDelimited(3, bytes)
            bytes = w.bytes
        }
        let error = #expect(throws: ProtoError.self) { try Inner(protobuf: bytes) }
        #expect(error?.code == .tooDeep)
        #expect(try Inner(protobuf: bytes, limits: ProtoLimits(maxDepth: 200)).child != nil)
    }

    @Test(arguments: [
        ([UInt8]([0x0a, 0x05, 0x61]), ProtoError.Code.truncated),        // declares 5 bytes, has 1
        ([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f], .truncated),                // declares 4 GiB
        ([0x0b], .invalidWireType),                                        // start group
        ([0x0f], .invalidWireType),                                        // wire type 7
        ([0x00, 0x01], .invalidFieldNumber),                               // field 0
        ([0x0d, 0x01, 0x02, 0x03, 0x04], .wrongWireType),                  // field 1 (string) as fixed32
        ([0x0a, 0x02, 0xc3, 0x28], .invalidUTF8),                          // bad UTF-8 in a string
        ([0x10] + [UInt8](repeating: 0xff, count: 10) + [0x01], .overlongVarint),   // enforcement (varint), 11 bytes
    ])
    func malformedInputIsATypedError(_ bytes: [UInt8], _ code: ProtoError.Code) throws {
        let error = #expect(throws: ProtoError.self) { try Finding(protobuf: bytes) }
        #expect(error?.code == code)
    }

    @Test func sizeLimit() {
        let error = #expect(throws: ProtoError.self) {
            try Decision(protobuf: [UInt8](repeating: 0, count: 65), limits: ProtoLimits(maxMessageBytes: 64))
        }
        #expect(error?.code == .tooLarge)
    }

    @Test func frameDecoderWaitsForIncompleteFramesAndRefusesBadHeaders() throws {
        let frame = Frame.bytes(of: Envelope(callID: 9, method: Method.health))
        var decoder = FrameDecoder(maxFrameBytes: 1024)
        var buffer = ByteBuffer(bytes: frame.dropLast())
        #expect(try decoder.decode(buffer: &buffer) == nil)
        buffer.writeBytes(frame.suffix(1))
        let payload = try #require(try decoder.decode(buffer: &buffer))
        #expect(try Envelope(protobuf: Array(payload.readableBytesView)).callID == 9)

        var oversize = ByteBuffer(bytes: [0, 0, 0, 4, 1])
        #expect(throws: FrameError.self) { try decoder.decode(buffer: &oversize) }
        var flagged = ByteBuffer(bytes: [1, 0, 0, 0, 0])
        #expect(throws: FrameError.self) { try decoder.decode(buffer: &flagged) }
        var partial = ByteBuffer(bytes: [0, 0, 0, 0, 9, 1, 2])
        #expect(throws: FrameError.self) { try decoder.decodeLast(buffer: &partial, seenEOF: true) }
    }
}
