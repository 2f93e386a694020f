public import CountersignConfig
import CountersignLedger
import CountersignPolicy
import CountersignSigner
import CountersignVerify
import Foundation
public import Logging
import Metrics
import NIOConcurrencyHelpers
public import Prometheus
public import ServiceLifecycle

/// A whole Countersign node built from its configuration: the token signer and keyring, the
/// ledger (with its lease), the policy, the decision service and the wire server, as
/// swift-service-lifecycle services started in that order and stopped in reverse.
public struct Node: Sendable {
    public let services: [any Service]
    public let server: WireServer

    /// Builds the node. A missing token or database, or an invalid policy file, does not stop it:
    /// it starts, reports itself unavailable in Health and `/healthz`, raises an alert, and refuses
    /// every decision until they are back (fail secure).
    /// - Parameter keyEventsPath: a key-event file from a ceremony held before the database existed,
    ///   imported into the ledger when the ledger has no key event yet (default:
    ///   keyring/key-events.jsonl beside the configuration file).
    /// - Throws: a configuration error: unreadable certificates or PKCS#11 module.
    ///   - metrics: the registry `/metrics` serves (when `node.metrics_listen` is set); bootstrap
    ///     swift-metrics with a `PrometheusMetricsFactory` over the same registry.
    public static func make(configuration: CountersignConfiguration, logger: Logger, keyEventsPath: String? = nil,
                            metrics: PrometheusCollectorRegistry? = nil) async throws -> Node {
        let alerts = Alerter(settings: configuration.alerts, node: configuration.node.name, logger: logger)
        let policy = PolicySource(settings: configuration.policy, logger: logger, alerts: alerts)
        let signer = try TokenSigner(settings: configuration.token, logger: logger)
        let eventsPath = keyEventsPath ?? configuration.ceremonyKeyEventsPath
        let ledger = try Ledger(database: configuration.database, settings: configuration.ledger, signer: signer, logger: logger)
        let custodian = KeyCustodian(signer: signer, log: LedgerKeyEventLog(ledger: ledger), settings: configuration.token, logger: logger)
        let leaseKeeper = LeaseKeeper(ledger: ledger, holder: configuration.node.name, alerts: alerts, logger: logger)
        let keyring = KeyringKeeper(custodian: custodian, ledger: ledger, ceremonyFile: FileKeyEventLog(path: eventsPath),
                                    lease: leaseKeeper, logger: logger)
        let decisions = DecisionService(policy: policy, signer: signer, ledger: ledger, alerts: alerts,
                                        limits: configuration.limits, logger: logger)

        var router = Router()
        let advertise = configuration.node.advertise
        router.registerHealth(node: configuration.node) {
            let lease = leaseKeeper.state
            return NodeState(role: lease.holding ? "active" : "standby", activeAddress: advertise, epoch: lease.epoch,
                             signerAvailable: signer.availability.isAvailable && signer.hasActiveKey, ledgerAvailable: lease.holding,
                             treeSize: lease.treeSize, policySHA256: policy.sha256Hex)
        }
        decisions.register(into: &router)
        router.registerCustody(custodian)
        let server = try WireServer(configuration: configuration, router: router, logger: logger)
        var services: [any Service] = [alerts, policy, SignerWatch(signer: signer, alerts: alerts), LedgerService(ledger: ledger),
                                       leaseKeeper, keyring, server]
        if let registry = metrics, let address = configuration.node.metricsListen {
            services.append(MetricsEndpoint(address: address, registry: registry, logger: logger) {
                // Every part that stops this node from deciding, not only the first.
                let lease = leaseKeeper.state
                var problems: [String] = []
                if case .invalid(let reason) = policy.state { problems.append("policy: \(reason)") }
                if !signer.hasActiveKey { problems.append("signer: no active key (the keyring is not loaded yet)") }
                if !signer.availability.isAvailable { problems.append("signer: \(signer.availability)") }
                if !lease.holding { problems.append("this node does not hold the ledger lease: \(lease.problem ?? "not taken yet")") }
                return (problems.isEmpty, problems.joined(separator: "; "))
            })
        }
        return Node(services: services, server: server)
    }

}

/// Runs the ledger's connection pool, batch writer and checkpointer until shutdown.
struct LedgerService: Service {
    let ledger: Ledger
    func run() async throws {
        await cancelWhenGracefulShutdown { await ledger.run() }
    }
}

/// Takes the ledger lease and keeps renewing it well inside its TTL. While it does not hold the
/// lease the node reports itself standby, and the database refuses its appends (epoch fence).
final class LeaseKeeper: Service, Sendable {
    struct State: Sendable {
        var holding = false
        var epoch: UInt64 = 0
        var treeSize: UInt64 = 0
        /// Why the last attempt to take or renew the lease failed (nil once it succeeds): another
        /// node holds it, or what stops this one from reaching the database.
        var problem: String?
        /// The kind of that failure: a standby is logged once, not at each renewal it sees.
        var problemCode: LedgerError.Code?
    }

    let ledger: Ledger
    let holder: String
    let ttl: Duration
    let alerts: Alerter?
    let logger: Logger
    private let box = NIOLockedValueBox(State())
    private let leaderGauge = Gauge(label: "countersign_leader")
    /// Recorded here once, when this node becomes active; the ledger's writer records every commit.
    private let sizeGauge = Gauge(label: Ledger.ledgerSizeMetric)

    init(ledger: Ledger, holder: String, ttl: Duration = .seconds(10), alerts: Alerter? = nil, logger: Logger) {
        self.ledger = ledger
        self.holder = holder
        self.ttl = ttl
        self.alerts = alerts
        self.logger = logger
    }

    var state: State { box.withLockedValue { $0 } }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    let lease = self.state.holding
                        ? try await self.ledger.renewLease(ttl: self.ttl)
                        : try await self.ledger.acquireLease(holder: self.holder, ttl: self.ttl)
                    let size = try await self.ledger.size()
                    let was = self.box.withLockedValue { s -> Bool in
                        defer { s = State(holding: true, epoch: lease.epoch, treeSize: size, problem: nil) }
                        return s.holding
                    }
                    if !was {
                        self.sizeGauge.record(Int64(size))
                        self.logger.info("holding the ledger lease", metadata: ["cs.epoch": "\(lease.epoch)"])
                        self.alerts?.post(Alert(.failover, "\(self.holder) is now active (holds the ledger lease, epoch \(lease.epoch))",
                                                details: ["epoch": "\(lease.epoch)", "holder": self.holder]))
                    }
                    self.leaderGauge.record(1)
                } catch {
                    // A node that held the lease tries again at once; one that did not asks why.
                    let was = self.state.holding
                    let problem = await self.problem(error, diagnose: !was)
                    let code = (error as? LedgerError)?.code
                    let (before, beforeCode) = self.box.withLockedValue { s -> (String?, LedgerError.Code?) in
                        defer { s.holding = false; s.problem = problem; s.problemCode = code }
                        return (s.problem, s.problemCode)
                    }
                    // Said once per cause, not at every attempt: a standby waits here for good.
                    if !was && code == .leaseLost && beforeCode != .leaseLost {
                        self.logger.info("standby", metadata: ["cs.reason": "\(problem)"])
                    } else if !was && code != .leaseLost && problem != before {
                        self.logger.error("cannot take the ledger lease", metadata: ["cs.reason": "\(problem)"])
                    }
                    if was {
                        self.logger.error("lost the ledger lease", metadata: ["cs.error": "\(error)"])
                        let leaseTaken = (error as? LedgerError)?.code == .leaseLost
                        self.alerts?.post(Alert(leaseTaken ? .failover : .ledgerFault,
                                                leaseTaken ? "\(self.holder) lost the ledger lease to another node: it no longer decides"
                                                           : "\(self.holder) cannot reach the ledger: every decision is UNAVAILABLE",
                                                details: ["holder": self.holder, "reason": "\(error)"]))
                    }
                    self.leaderGauge.record(0)
                }
                try? await Task.sleep(for: self.ttl / 3)
            }
        }
    }

    /// What a failed lease attempt tells an operator. A read that timed out says only that; with
    /// `diagnose`, a new connection says why (a refused login, no such socket).
    private func problem(_ error: any Error, diagnose: Bool) async -> String {
        guard let e = error as? LedgerError else { return "\(error)" }
        if diagnose, e.code == .unavailable, let cause = await ledger.connectionProblem() { return cause.message }
        return e.message
    }
}

/// Raises an `hsm_fault` alert whenever the token becomes unavailable, and another when it is back.
struct SignerWatch: Service {
    let signer: TokenSigner
    let alerts: Alerter

    func run() async throws {
        await cancelWhenGracefulShutdown {
            var wasAvailable: Bool?
            for await availability in signer.availabilityUpdates() {
                let available = availability.isAvailable
                defer { wasAvailable = available }
                switch (wasAvailable, available) {
                case (nil, false), (true?, false):
                    alerts.post(Alert(.hsmFault, "the signing token is unavailable: nothing is signed, every decision is UNAVAILABLE",
                                      details: ["reason": "\(availability)"]))
                case (false?, true):
                    alerts.post(Alert(.hsmFault, "the signing token is available again: decisions resume"))
                default:
                    break
                }
            }
        }
    }
}

/// Loads the keyring from the ledger's key events once the ledger can be read (importing a
/// ceremony's key-event file first, when the ledger has none and this node holds the lease),
/// retrying until it can; reloads it whenever this node becomes active, since the previous active
/// node may have rotated; and runs the rotation scheduler. Until the keyring is loaded nothing is
/// signed: every decision is UNAVAILABLE.
struct KeyringKeeper: Service {
    let custodian: KeyCustodian
    let ledger: Ledger
    let ceremonyFile: FileKeyEventLog
    let lease: LeaseKeeper
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.keepLoaded() }
                group.addTask {
                    // The scheduler starts once the keyring is loaded (a rotation needs the chain).
                    while await self.custodian.activeKey == nil {
                        guard (try? await Task.sleep(for: .milliseconds(500))) != nil else { return }
                    }
                    await self.custodian.runRotationScheduler()
                }
                await group.waitForAll()
            }
        }
    }

    private func keepLoaded() async {
        var loadedAsActive: Bool?
        var backoff = Duration.milliseconds(200)
        while !Task.isCancelled {
            let holding = lease.state.holding
            if loadedAsActive == nil || (holding && loadedAsActive == false) {
                do {
                    if holding {
                        try await LedgerKeyEventLog(ledger: ledger).importIfEmpty(from: ceremonyFile, logger: logger)
                    }
                    try await custodian.load()
                    guard let key = await custodian.activeKey else {
                        // Not holding the lease yet: the ceremony's file may still be imported once it is.
                        if holding {
                            logger.error("the ledger holds no key event: run the key ceremony (countersign keys generate)")
                        }
                        try? await Task.sleep(for: holding ? .seconds(10) : .milliseconds(200))
                        continue
                    }
                    loadedAsActive = holding
                    backoff = .milliseconds(200)
                    logger.info("keyring loaded from the ledger", metadata: ["cs.key_id": "\(key.keyID)"])
                } catch {
                    logger.error("keyring did not load: nothing is signed until it does", metadata: [
                        "cs.error": "\(String(reflecting: error))", "cs.retry_in": "\(backoff)",
                    ])
                    try? await Task.sleep(for: backoff)
                    backoff = min(backoff * 2, .seconds(10))
                    continue
                }
            }
            if !holding, loadedAsActive == true { loadedAsActive = false }
            try? await Task.sleep(for: .milliseconds(200))
        }
    }
}
