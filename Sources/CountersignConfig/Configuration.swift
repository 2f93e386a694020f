import Foundation

/// The whole configuration of a Countersign node, as read from one YAML file.
///
/// The YAML maps onto these value types and nothing else reads YAML. Secrets never appear in the
/// file, only where to read them (``SecretSource``). Relative paths are resolved against the
/// folder of the configuration file. Unknown keys are an error, so that a misspelt key is not
/// silently ignored. See `Deploy/countersign.example.yaml` for every key with its default.
public struct CountersignConfiguration: Sendable, Hashable {
    public var node: NodeSettings
    public var tls: TLSSettings
    public var limits: LimitSettings
    public var principals: [Principal]
    public var token: TokenSettings
    public var database: DatabaseSettings
    public var ledger: LedgerSettings
    public var policy: PolicySettings
    public var alerts: AlertSettings
    /// Where the file was read from (for messages); empty for a configuration made in code.
    public var sourcePath: String

    public init(node: NodeSettings, tls: TLSSettings, limits: LimitSettings = .defaults, principals: [Principal],
                token: TokenSettings, database: DatabaseSettings, ledger: LedgerSettings = .defaults,
                policy: PolicySettings = .defaults, alerts: AlertSettings = .defaults, sourcePath: String = "") {
        self.node = node
        self.tls = tls
        self.limits = limits
        self.principals = principals
        self.token = token
        self.database = database
        self.ledger = ledger
        self.policy = policy
        self.alerts = alerts
        self.sourcePath = sourcePath
    }

    /// The key-event file of a ceremony held before the database existed:
    /// `keyring/key-events.jsonl` beside the configuration file. A node imports it into its ledger.
    public var ceremonyKeyEventsPath: String {
        URL(fileURLWithPath: sourcePath).deletingLastPathComponent().appendingPathComponent("keyring/key-events.jsonl").path
    }

    /// The principal pinned by `spkiSHA256` (lowercase hex), if any.
    public func principal(pinnedBy spkiSHA256: String) -> Principal? {
        principals.first { $0.spkiSHA256 == spkiSHA256 }
    }
}

/// A `host:port` pair.
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`, `[v6]:port`.
    public init?(_ text: String) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else { return nil }
        self.host = String(host)
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Identity and addresses of this node.
public struct NodeSettings: Sendable, Hashable {
    /// A name for logs, the lease and metrics (`node.name`).
    public var name: String
    /// Where the framed mTLS protocol listens (`node.listen`).
    public var listen: HostPort
    /// What a standby tells clients to use instead (`node.advertise`). Default: `listen`.
    public var advertise: String
    /// Loopback HTTP port for `/metrics` and `/healthz` (`node.metrics_listen`); `nil` turns it off.
    public var metricsListen: HostPort?

    public init(name: String, listen: HostPort, advertise: String? = nil, metricsListen: HostPort? = nil) {
        self.name = name
        self.listen = listen
        self.advertise = advertise ?? listen.description
        self.metricsListen = metricsListen
    }
}

/// Certificates for mutual TLS.
public struct TLSSettings: Sendable, Hashable {
    /// PEM certificate chain of the server (`tls.certificate`).
    public var certificatePath: String
    /// PEM private key of the server (`tls.private_key`).
    public var privateKeyPath: String
    /// PEM CA certificate(s) that client certificates must chain to (`tls.client_ca`).
    public var clientCAPath: String
    /// SHA-256 of the server's SubjectPublicKeyInfo, lowercase hex, which clients pin
    /// (`tls.server_spki_sha256`). Used by the command-line client.
    public var serverSPKISHA256: String?

    public init(certificatePath: String, privateKeyPath: String, clientCAPath: String, serverSPKISHA256: String? = nil) {
        self.certificatePath = certificatePath
        self.privateKeyPath = privateKeyPath
        self.clientCAPath = clientCAPath
        self.serverSPKISHA256 = serverSPKISHA256
    }
}

/// Limits of the wire server. Defaults: ``defaults``.
public struct LimitSettings: Sendable, Hashable {
    /// Largest frame accepted (`limits.max_frame_bytes`). Default 4 MiB.
    public var maxFrameBytes: Int
    /// Connections served at once; more are closed at accept (`limits.max_connections`). Default 1,024.
    public var maxConnections: Int
    /// Time a client has to complete the TLS handshake (`limits.handshake_timeout_ms`). Default 5,000 ms.
    public var handshakeTimeoutMs: Int
    /// A connection that completes no frame for this long is closed, however many bytes trickle in
    /// (`limits.idle_timeout_ms`). Default 30,000 ms.
    public var idleTimeoutMs: Int
    /// Deadline of a call whose envelope says 0 (`limits.default_deadline_ms`). Default 10,000 ms.
    public var defaultDeadlineMs: Int
    /// Calls in flight on one connection; more wait, unread, until one ends
    /// (`limits.max_calls_per_connection`). Default 256.
    public var maxCallsPerConnection: Int
    /// Bytes of request bodies held by the calls in flight on the whole node, and of their replies
    /// not yet written to a socket; a call that would go above it is answered `RESOURCE_EXHAUSTED`
    /// at once (`limits.max_request_bytes_in_flight`). One connection may hold an eighth of it, or
    /// `maxFrameBytes` if that is more. The frames still arriving are bounded by as much again, at
    /// their declared sizes (a frame that does not fit is not read until it does).
    /// At least `maxFrameBytes`. Default 256 MiB.
    public var maxRequestBytesInFlight: Int
    /// Most findings a decision lists, the strictest first; the verdict is over all of them, and the
    /// decision counts and names the rest (`limits.max_findings_listed`). Default 1,000.
    public var maxFindingsListed: Int

    public init(maxFrameBytes: Int = 4 << 20, maxConnections: Int = 1024, handshakeTimeoutMs: Int = 5000,
                idleTimeoutMs: Int = 30_000, defaultDeadlineMs: Int = 10_000, maxCallsPerConnection: Int = 256,
                maxRequestBytesInFlight: Int = 256 << 20, maxFindingsListed: Int = 1000) {
        self.maxFrameBytes = maxFrameBytes
        self.maxConnections = maxConnections
        self.handshakeTimeoutMs = handshakeTimeoutMs
        self.idleTimeoutMs = idleTimeoutMs
        self.defaultDeadlineMs = defaultDeadlineMs
        self.maxCallsPerConnection = maxCallsPerConnection
        self.maxRequestBytesInFlight = maxRequestBytesInFlight
        self.maxFindingsListed = maxFindingsListed
    }

    public static let defaults = LimitSettings()
}

/// What a pinned client certificate may do.
public enum Role: String, Sendable, Hashable, CaseIterable {
    case orchestrator, approver, officer, auditor
}

/// A client identity: the pin of its certificate's public key and what it may do.
public struct Principal: Sendable, Hashable {
    /// Stable id used in statements and logs (`principals[].id`).
    public var id: String
    public var role: Role
    /// Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo (`principals[].spki_sha256`).
    public var spkiSHA256: String
    /// Accountable humans an orchestrator may act for (`principals[].owners`); `*` means any.
    public var owners: [String]
    /// Approval level 1–4 of an approver (`principals[].level`).
    public var level: Int?

    public init(id: String, role: Role, spkiSHA256: String, owners: [String] = [], level: Int? = nil) {
        self.id = id
        self.role = role
        self.spkiSHA256 = spkiSHA256
        self.owners = owners
        self.level = level
    }

    /// Whether this principal may act for `owner`.
    public func mayActFor(_ owner: String) -> Bool {
        owners.contains("*") || owners.contains(owner)
    }
}

/// Where a secret comes from: a file (trailing newline trimmed) or an environment variable.
public enum SecretSource: Sendable, Hashable, CustomStringConvertible {
    case file(String)
    case environment(String)

    /// Reads the secret. Never log the result.
    /// - Throws: ``ConfigurationError`` naming the file or variable (never the value).
    public func read() throws -> String {
        switch self {
        case .file(let path):
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
                throw ConfigurationError(key: "secret", message: "cannot read secret file \(path)")
            }
            return text.trimmingCharacters(in: .newlines)
        case .environment(let name):
            guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else {
                throw ConfigurationError(key: "secret", message: "environment variable \(name) is not set")
            }
            return value
        }
    }

    public var description: String {
        switch self {
        case .file(let path): "file \(path)"
        case .environment(let name): "$\(name)"
        }
    }
}

/// Signing key algorithms a token key may have.
public enum KeyAlgorithm: String, Sendable, Hashable, CaseIterable {
    /// ECDSA over P-256 with SHA-256, DER signatures. The default.
    case ecdsaP256 = "ecdsa-p256"
    /// RSA-PSS 4096 with SHA-256, MGF1-SHA-256, 32-byte salt.
    case rsaPSS4096 = "rsa-pss-4096"
}

/// The PKCS#11 token that holds the signing keys.
public struct TokenSettings: Sendable, Hashable {
    /// Path of the PKCS#11 module (`token.module`).
    public var modulePath: String
    /// SoftHSM2 only: its configuration file, exported as SOFTHSM2_CONF before the module loads
    /// (`token.softhsm2_conf`).
    public var softHSM2ConfPath: String?
    /// Label of the token (`token.token_label`).
    public var tokenLabel: String
    /// The user PIN (`token.pin_file` or `token.pin_env`).
    public var pin: SecretSource
    /// Algorithm of newly generated keys (`token.key_algorithm`). Default `ecdsa-p256`.
    public var keyAlgorithm: KeyAlgorithm
    /// Logged-in sessions kept open for signing (`token.sessions`). Default 4.
    public var sessions: Int
    /// Age at which the active key is rotated (`token.rotation_days`). Default 90.
    public var rotationDays: Int
    /// How long a rotation proposal waits for its second officer (`token.proposal_ttl_seconds`).
    /// Default 3,600.
    public var proposalTTLSeconds: Int

    public init(modulePath: String, softHSM2ConfPath: String? = nil, tokenLabel: String, pin: SecretSource,
                keyAlgorithm: KeyAlgorithm = .ecdsaP256, sessions: Int = 4, rotationDays: Int = 90,
                proposalTTLSeconds: Int = 3600) {
        self.modulePath = modulePath
        self.softHSM2ConfPath = softHSM2ConfPath
        self.tokenLabel = tokenLabel
        self.pin = pin
        self.keyAlgorithm = keyAlgorithm
        self.sessions = sessions
        self.rotationDays = rotationDays
        self.proposalTTLSeconds = proposalTTLSeconds
    }
}

/// A database login.
public struct DatabaseCredentials: Sendable, Hashable {
    public var user: String
    public var password: SecretSource

    public init(user: String, password: SecretSource) {
        self.user = user
        self.password = password
    }
}

/// The PostgreSQL database of the ledger.
public struct DatabaseSettings: Sendable, Hashable {
    public enum Endpoint: Sendable, Hashable {
        /// A Unix socket folder and the port number in the socket's name (`database.socket_directory`).
        case unixSocket(directory: String, port: Int)
        /// TCP (`database.host`, `database.port`).
        case tcp(host: String, port: Int)
    }

    public var endpoint: Endpoint
    /// `database.database`. Default `countersign`.
    public var database: String
    /// Runs migrations (`database.owner`); only `countersign ledger migrate` uses it.
    public var owner: DatabaseCredentials?
    /// INSERT and SELECT only: what the server uses (`database.writer`).
    public var writer: DatabaseCredentials
    /// SELECT only: auditors and `ledger verify` (`database.reader`).
    public var reader: DatabaseCredentials?

    public init(endpoint: Endpoint, database: String = "countersign", owner: DatabaseCredentials? = nil,
                writer: DatabaseCredentials, reader: DatabaseCredentials? = nil) {
        self.endpoint = endpoint
        self.database = database
        self.owner = owner
        self.writer = writer
        self.reader = reader
    }

    /// The path of the Unix socket file, for a socket endpoint.
    public var socketPath: String? {
        if case .unixSocket(let directory, let port) = endpoint { return "\(directory)/.s.PGSQL.\(port)" }
        return nil
    }

    /// Where the database is, for messages: the socket file, or host:port.
    public var address: String {
        switch endpoint {
        case .unixSocket: socketPath!
        case .tcp(let host, let port): HostPort(host: host, port: port).description
        }
    }
}

/// The ledger. Defaults: ``defaults``.
public struct LedgerSettings: Sendable, Hashable {
    /// Origin line of checkpoints, the deployment's name (`ledger.origin`). Default `countersign.local/ledger`.
    public var origin: String
    /// Longest time between checkpoints while entries arrive (`ledger.checkpoint_interval_ms`). Default 1,000.
    public var checkpointIntervalMs: Int

    public init(origin: String = "countersign.local/ledger", checkpointIntervalMs: Int = 1000) {
        self.origin = origin
        self.checkpointIntervalMs = checkpointIntervalMs
    }

    public static let defaults = LedgerSettings()
}

/// The policy bundle. Defaults: ``defaults``.
public struct PolicySettings: Sendable, Hashable {
    /// A policy YAML file (`policy.file`); `nil` means the built-in default policy.
    public var file: String?

    public init(file: String? = nil) {
        self.file = file
    }

    public static let defaults = PolicySettings()
}

/// What an alert is about; a webhook can subscribe to some of them (`alerts.webhooks[].events`).
public enum AlertEvent: String, Sendable, Hashable, CaseIterable, Codable {
    /// A plan was vetoed.
    case veto
    /// An execution report does not match its approval (or had none).
    case deviation
    /// A person lifted (or tried to lift) a soft veto.
    case override
    /// This node took or lost the ledger lease.
    case failover
    /// The token became unavailable, or came back.
    case hsmFault = "hsm_fault"
    /// The ledger became unreachable or refused appends, or came back.
    case ledgerFault = "ledger_fault"
    /// The policy file became invalid (every decision is UNAVAILABLE), or valid again.
    case policyFault = "policy_fault"
}

/// One webhook that alerts are POSTed to as JSON.
public struct Webhook: Sendable, Hashable {
    /// Where the URL comes from: given in the file (`url`), or, for a URL that is itself a secret
    /// such as a Slack incoming webhook, from a file or the environment (`url_file`, `url_env`).
    public enum Address: Sendable, Hashable, CustomStringConvertible {
        case literal(String)
        case secret(SecretSource)

        /// The URL. Never log it when it is a secret.
        public func read() throws -> String {
            switch self {
            case .literal(let url): url
            case .secret(let source): try source.read()
            }
        }

        public var description: String {
            switch self {
            case .literal(let url): url
            case .secret(let source): "(secret URL from \(source))"
            }
        }
    }

    public var address: Address
    /// The events sent to it (`alerts.webhooks[].events`). Default: all of them.
    public var events: Set<AlertEvent>

    public init(address: Address, events: Set<AlertEvent> = Set(AlertEvent.allCases)) {
        self.address = address
        self.events = events
    }
}

/// Alert webhooks. Defaults: ``defaults`` (no webhook: alerts are only logged).
public struct AlertSettings: Sendable, Hashable {
    public var webhooks: [Webhook]
    /// Alerts waiting to be delivered; when full, new alerts are dropped and counted, never waited
    /// for (`alerts.queue_capacity`). Default 1,000.
    public var queueCapacity: Int
    /// Delivery attempts per alert and webhook, with exponential backoff between them
    /// (`alerts.max_attempts`). Default 6.
    public var maxAttempts: Int
    /// First backoff; it doubles on each retry, with jitter (`alerts.initial_backoff_ms`). Default 500 ms.
    public var initialBackoffMs: Int
    /// Time limit of one delivery attempt (`alerts.timeout_ms`). Default 5,000 ms.
    public var timeoutMs: Int

    public init(webhooks: [Webhook] = [], queueCapacity: Int = 1000, maxAttempts: Int = 6, initialBackoffMs: Int = 500,
                timeoutMs: Int = 5000) {
        self.webhooks = webhooks
        self.queueCapacity = queueCapacity
        self.maxAttempts = maxAttempts
        self.initialBackoffMs = initialBackoffMs
        self.timeoutMs = timeoutMs
    }

    public static let defaults = AlertSettings()
}
