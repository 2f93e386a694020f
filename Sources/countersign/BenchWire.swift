import ArgumentParser
import CountersignClient
import CountersignConfig
import CountersignServer
import CountersignWire
import Foundation
import Logging
import NIOPosix

struct BenchWire: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wire",
        abstract: "Codec throughput for a Decision-sized message, and Health round trips over mTLS.",
        discussion: """
            Codec: encodes and decodes a Decision with six findings, a signed statement and a signature \
            (about 2 KB) in a loop, and prints MB/s and messages/s. Health: starts a server in this process \
            on a free loopback port with the dev configuration and certificates, opens 1 and then 16 \
            client connections (the orchestrator's certificate), keeps --in-flight calls outstanding on \
            each, and prints completed round trips per second. Server and clients share this machine's cores.
            """)

    @OptionGroup var config: ConfigOption

    @Option(help: "Seconds each Health run lasts.")
    var seconds: Double = 5

    @Option(help: "Calls outstanding per connection.")
    var inFlight: Int = 32

    @Option(help: "Codec iterations.")
    var iterations: Int = 200_000

    func run() async throws {
        benchCodec()
        let configuration = try CountersignConfiguration.load(path: try config.resolvedPath())
        for connections in [1, 16] {
            try await benchHealth(configuration: configuration, connections: connections)
        }
    }

    static func sampleDecision() -> Decision {
        var d = Decision()
        d.requestID = "req-002-scope-creep-pci-firewall"
        d.verdict = .veto
        d.summary = "This plan creates the ML segment you asked for, but ALSO opens your production payment environment to the internet, which you did not ask for."
        for i in 0..<6 {
            d.findings.append(Finding(
                rule: ["intent-scope", "prod-open-ingress", "required-tags"][i % 3], enforcement: Enforcement(rawValue: Int32(1 + i % 5)),
                address: "module.network.aws_security_group_rule.prod_pci_ingress[\(i)]", path: "cidr_blocks[0]",
                message: "Ingress from 0.0.0.0/0 on port 443 to a production, PCI-scoped security group.",
                before: "10.0.0.0/8", after: "0.0.0.0/0", remedy: "Restrict the source to the ML segment's CIDR (10.150.0.0/16).",
                overridableBy: i % 3 == 2 ? ["approver:L2"] : []))
        }
        d.cannotOverride = true
        d.statement = [UInt8](repeating: 0x5a, count: 320)
        d.signature = [UInt8](repeating: 0x30, count: 71)
        d.keyID = String(repeating: "ab", count: 32)
        d.ledgerIndex = 123_456
        d.payloadType = "application/vnd.countersign.decision+protobuf"
        return d
    }

    func benchCodec() {
        let decision = Self.sampleDecision()
        let bytes = decision.protobufBytes()
        var sink = 0
        let clock = ContinuousClock()
        var start = clock.now
        for _ in 0..<iterations { sink &+= decision.protobufBytes().count }
        let encode = clock.now - start
        start = clock.now
        for _ in 0..<iterations { sink &+= (try? Decision(protobuf: bytes))?.findings.count ?? 0 }
        let decode = clock.now - start
        func rate(_ d: Duration) -> (mbs: Double, perSecond: Double) {
            let s = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
            return (Double(bytes.count * iterations) / s / 1e6, Double(iterations) / s)
        }
        let e = rate(encode), dd = rate(decode)
        print("codec: Decision of \(bytes.count) bytes, \(iterations) iterations (checksum \(sink % 10))")
        print(String(format: "  decode: %8.1f MB/s  %10.0f messages/s", dd.mbs, dd.perSecond))
        print(String(format: "  encode: %8.1f MB/s  %10.0f messages/s", e.mbs, e.perSecond))
    }

    func benchHealth(configuration base: CountersignConfiguration, connections: Int) async throws {
        var configuration = base
        configuration.node.listen = HostPort(host: "127.0.0.1", port: 0)
        var router = Router()
        router.registerHealth(node: configuration.node) { NodeState(role: "active", activeAddress: "bench") }
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let server = try WireServer(configuration: configuration, router: router, logger: logger)
        let serverTask = Task { try await server.run() }
        let port = try await server.boundAddress().port!
        let dir = URL(fileURLWithPath: configuration.sourcePath).deletingLastPathComponent()
        let clientConfiguration = ClientConfiguration(
            host: "127.0.0.1", port: port, certificatePath: dir.appendingPathComponent("pki/orchestrator.crt").path,
            privateKeyPath: dir.appendingPathComponent("pki/orchestrator.key").path,
            trustRootsPath: configuration.tls.clientCAPath, serverSPKISHA256: configuration.tls.serverSPKISHA256 ?? "")
        var clients: [CountersignClient] = []
        for _ in 0..<connections { clients.append(try await CountersignClient.connect(clientConfiguration)) }
        let end = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        let start = ContinuousClock.now
        let completed = try await withThrowingTaskGroup(of: Int.self) { group in
            for client in clients {
                for _ in 0..<inFlight {
                    group.addTask {
                        var n = 0
                        while ContinuousClock.now < end {
                            _ = try await client.health()
                            n += 1
                        }
                        return n
                    }
                }
            }
            return try await group.reduce(0, +)
        }
        let elapsed = ContinuousClock.now - start
        let s = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print(String(format: "health over mTLS: %2d connection(s) x %d in flight: %9.0f calls/s (%d calls in %.1f s)",
                     connections, inFlight, Double(completed) / s, completed, s))
        for client in clients { await client.close() }
        server.shutdown()
        try await serverTask.value
    }
}
