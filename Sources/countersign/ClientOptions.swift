import ArgumentParser
import CountersignClient
import CountersignConfig
import Foundation

/// Options of every subcommand that talks to a server.
struct ClientOptions: ParsableArguments {
    @OptionGroup var config: ConfigOption

    @Option(name: .long, help: ArgumentHelp(
        "Whose certificate to present: pki/NAME.crt and pki/NAME.key beside the configuration file.",
        discussion: "The dev environment has orchestrator, approver-1..3, officer-1..2, auditor and unpinned."))
    var identity: String?

    @Option(name: .long, help: "Client certificate (PEM); overrides --identity.")
    var cert: String?

    @Option(name: .long, help: "Client private key (PEM); overrides --identity.")
    var key: String?

    @Option(name: .long, help: "CA certificate the server must chain to (default: tls.client_ca of the configuration).")
    var ca: String?

    @Option(name: .long, help: "Server address host:port (default: node.advertise of the configuration).")
    var address: String?

    @Option(name: .long, help: "SHA-256 pin of the server's key, hex (default: tls.server_spki_sha256 of the configuration).")
    var serverPin: String?

    @Option(name: .long, help: "Deadline of each call, in milliseconds.")
    var deadlineMs: Int = 10_000

    /// The client configuration, with `defaultIdentity` when neither --identity nor --cert is given.
    func clientConfiguration(defaultIdentity: String) throws -> ClientConfiguration {
        let path = try config.resolvedPath()
        let server = try CountersignConfiguration.load(path: path)
        let base = URL(fileURLWithPath: path).deletingLastPathComponent()
        let name = identity ?? defaultIdentity
        let certPath = cert ?? base.appendingPathComponent("pki/\(name).crt").path
        let keyPath = key ?? base.appendingPathComponent("pki/\(name).key").path
        for file in [certPath, keyPath] where !FileManager.default.isReadableFile(atPath: file) {
            throw ValidationError("cannot read \(file): pass --identity NAME, or --cert and --key")
        }
        let addressText = address ?? server.node.advertise
        guard let hostPort = HostPort(addressText) else { throw ValidationError("--address must be host:port, not '\(addressText)'") }
        guard let pin = serverPin ?? server.tls.serverSPKISHA256 else {
            throw ValidationError("no server pin: pass --server-pin or set tls.server_spki_sha256 in \(path)")
        }
        return ClientConfiguration(host: hostPort.host, port: hostPort.port, certificatePath: certPath, privateKeyPath: keyPath,
                                   trustRootsPath: ca ?? server.tls.clientCAPath, serverSPKISHA256: pin,
                                   defaultDeadline: .milliseconds(deadlineMs))
    }
}
