import ArgumentParser
import CountersignConfig
import CountersignServer
import Foundation
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import UnixSignals

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a Countersign node: the mTLS framed-protobuf server.",
        discussion: """
            Reads the configuration (--config, $COUNTERSIGN_CONFIG or .local/countersign.yaml), listens on \
            node.listen, and accepts only clients whose certificate chains to tls.client_ca and whose key \
            is pinned in principals. Logs are JSON lines on standard error. SIGTERM or SIGINT shut it down \
            gracefully: calls in flight finish (within 30 s), new ones are refused; after 35 s what still \
            runs is cancelled, and 10 s after that the process ends regardless.
            """)

    /// The wire server's drain time and 5 s more for the other services to stop.
    static let gracefulShutdownLimit: Duration = .seconds(35)

    @OptionGroup var config: ConfigOption

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("unknown --log-level '\(logLevel)'") }
        let path = try config.resolvedPath()
        let configuration: CountersignConfiguration
        do {
            configuration = try CountersignConfiguration.load(path: path)
        } catch let error as ConfigurationError {
            throw ValidationError("invalid configuration: \(error)")
        }
        LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: level) }
        var logger = Logger(label: "countersign")
        logger[metadataKey: "cs.node"] = "\(configuration.node.name)"

        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let node = try await Node.make(configuration: configuration, logger: logger, metrics: registry)
        var groupConfiguration = ServiceGroupConfiguration(
            services: node.services.map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        // A shutdown always ends: calls in flight have the wire server's drain time (30 s) to
        // finish, then whatever still runs is cancelled, and a service that ignores cancellation
        // for 10 s more ends the process (no decision is lost by that: each is in the ledger
        // before its reply is sent).
        groupConfiguration.maximumGracefulShutdownDuration = Self.gracefulShutdownLimit
        groupConfiguration.maximumCancellationDuration = .seconds(10)
        try await ServiceGroup(configuration: groupConfiguration).run()
    }
}
