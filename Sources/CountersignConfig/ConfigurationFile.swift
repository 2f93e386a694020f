import Foundation
import Yams

/// A configuration that cannot be used: which key, and what is wrong with it.
public struct ConfigurationError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Dotted path of the key, such as `principals[2].spki_sha256`.
    public var key: String
    public var message: String
    /// The file, when the error came from one.
    public var file: String

    public init(key: String, message: String, file: String = "") {
        self.key = key
        self.message = message
        self.file = file
    }

    public var description: String {
        let location = file.isEmpty ? key : "\(file): \(key)"
        return location.isEmpty ? message : "\(location): \(message)"
    }
}

extension CountersignConfiguration {
    /// Reads and validates a configuration file.
    /// - Throws: ``ConfigurationError`` naming the key and what is wrong with it.
    public static func load(path: String) throws -> CountersignConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError(key: "", message: "cannot read configuration file", file: path)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigurationError(key: "", message: "not UTF-8 text", file: path)
        }
        let base = URL(fileURLWithPath: path).deletingLastPathComponent().path
        do {
            var config = try parse(yaml: text, baseDirectory: base)
            config.sourcePath = path
            return config
        } catch var error as ConfigurationError {
            error.file = path
            throw error
        }
    }

    /// Parses configuration YAML; relative paths are resolved against `baseDirectory`.
    public static func parse(yaml: String, baseDirectory: String) throws -> CountersignConfiguration {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            throw ConfigurationError(key: "", message: "not valid YAML: \(error)")
        }
        guard let root else { throw ConfigurationError(key: "", message: "the file is empty") }
        let top = try YAMLMap(root, path: "", base: baseDirectory)
        try top.allow(["node", "tls", "limits", "principals", "token", "database", "ledger", "policy", "alerts"])

        let nodeMap = try top.map("node")
        try nodeMap.allow(["name", "listen", "advertise", "metrics_listen"])
        let node = NodeSettings(
            name: try nodeMap.string("name"),
            listen: try nodeMap.hostPort("listen"),
            advertise: try nodeMap.optionalString("advertise"),
            metricsListen: try nodeMap.optionalHostPort("metrics_listen"))

        let tlsMap = try top.map("tls")
        try tlsMap.allow(["certificate", "private_key", "client_ca", "server_spki_sha256"])
        let tls = TLSSettings(
            certificatePath: try tlsMap.path("certificate"),
            privateKeyPath: try tlsMap.path("private_key"),
            clientCAPath: try tlsMap.path("client_ca"),
            serverSPKISHA256: try tlsMap.optionalPin("server_spki_sha256"))

        var limits = LimitSettings.defaults
        if let limitsMap = try top.optionalMap("limits") {
            try limitsMap.allow(["max_frame_bytes", "max_connections", "handshake_timeout_ms", "idle_timeout_ms",
                                 "default_deadline_ms", "max_calls_per_connection", "max_request_bytes_in_flight",
                                 "max_findings_listed"])
            limits.maxFrameBytes = try limitsMap.int("max_frame_bytes", default: limits.maxFrameBytes, in: 64...(256 << 20))
            limits.maxConnections = try limitsMap.int("max_connections", default: limits.maxConnections, in: 1...1_000_000)
            limits.handshakeTimeoutMs = try limitsMap.int("handshake_timeout_ms", default: limits.handshakeTimeoutMs, in: 10...600_000)
            limits.idleTimeoutMs = try limitsMap.int("idle_timeout_ms", default: limits.idleTimeoutMs, in: 10...86_400_000)
            limits.defaultDeadlineMs = try limitsMap.int("default_deadline_ms", default: limits.defaultDeadlineMs, in: 1...3_600_000)
            limits.maxCallsPerConnection = try limitsMap.int("max_calls_per_connection", default: limits.maxCallsPerConnection, in: 1...1_000_000)
            limits.maxRequestBytesInFlight = try limitsMap.int("max_request_bytes_in_flight", default: limits.maxRequestBytesInFlight, in: 64...(1 << 40))
            limits.maxFindingsListed = try limitsMap.int("max_findings_listed", default: limits.maxFindingsListed, in: 1...100_000)
            if limits.maxRequestBytesInFlight < limits.maxFrameBytes {
                // A frame as large as allowed would then be refused whatever else is in flight.
                throw limitsMap.error("max_request_bytes_in_flight",
                                      "must be at least limits.max_frame_bytes (\(limits.maxFrameBytes)), not \(limits.maxRequestBytesInFlight)")
            }
        }

        var principals: [Principal] = []
        for (index, item) in try top.sequence("principals").enumerated() {
            let p = try YAMLMap(item, path: "principals[\(index)]", base: baseDirectory)
            try p.allow(["id", "role", "spki_sha256", "owners", "level"])
            let roleText = try p.string("role")
            guard let role = Role(rawValue: roleText) else {
                throw p.error("role", "must be one of \(Role.allCases.map(\.rawValue).joined(separator: ", ")), not '\(roleText)'")
            }
            let level = try p.optionalInt("level", in: 1...4)
            if role == .approver, level == nil { throw p.error("level", "an approver needs a level from 1 to 4") }
            if role != .approver, level != nil { throw p.error("level", "only approvers have a level") }
            let owners = try p.optionalStrings("owners") ?? []
            if role == .orchestrator, owners.isEmpty {
                throw p.error("owners", "an orchestrator needs the owners it may act for (or [\"*\"])")
            }
            principals.append(Principal(id: try p.string("id"), role: role, spkiSHA256: try p.pin("spki_sha256"),
                                        owners: owners, level: level))
        }
        var seenIDs = Set<String>(), seenPins = Set<String>()
        for (i, p) in principals.enumerated() {
            guard seenIDs.insert(p.id).inserted else {
                throw ConfigurationError(key: "principals[\(i)].id", message: "'\(p.id)' is used twice")
            }
            guard seenPins.insert(p.spkiSHA256).inserted else {
                throw ConfigurationError(key: "principals[\(i)].spki_sha256", message: "pinned twice: one key, one principal")
            }
        }

        let tokenMap = try top.map("token")
        try tokenMap.allow(["module", "softhsm2_conf", "token_label", "pin_file", "pin_env", "key_algorithm", "sessions",
                            "rotation_days", "proposal_ttl_seconds"])
        let algorithmText = try tokenMap.optionalString("key_algorithm") ?? KeyAlgorithm.ecdsaP256.rawValue
        guard let algorithm = KeyAlgorithm(rawValue: algorithmText) else {
            throw tokenMap.error("key_algorithm", "must be one of \(KeyAlgorithm.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let token = TokenSettings(
            modulePath: try tokenMap.path("module"),
            softHSM2ConfPath: try tokenMap.optionalPath("softhsm2_conf"),
            tokenLabel: try tokenMap.string("token_label"),
            pin: try tokenMap.secret("pin"),
            keyAlgorithm: algorithm,
            sessions: try tokenMap.int("sessions", default: 4, in: 1...256),
            rotationDays: try tokenMap.int("rotation_days", default: 90, in: 1...3650),
            proposalTTLSeconds: try tokenMap.int("proposal_ttl_seconds", default: 3600, in: 10...604_800))

        let dbMap = try top.map("database")
        try dbMap.allow(["socket_directory", "host", "port", "database", "owner", "writer", "reader"])
        let endpoint: DatabaseSettings.Endpoint
        let port = try dbMap.int("port", default: 5432, in: 1...65535)
        if let socket = try dbMap.optionalPath("socket_directory") {
            if try dbMap.optionalString("host") != nil { throw dbMap.error("host", "give socket_directory or host, not both") }
            endpoint = .unixSocket(directory: socket, port: port)
        } else if let host = try dbMap.optionalString("host") {
            endpoint = .tcp(host: host, port: port)
        } else {
            throw dbMap.error("socket_directory", "give socket_directory (a Unix socket folder) or host")
        }
        func credentials(_ key: String) throws -> DatabaseCredentials? {
            guard let m = try dbMap.optionalMap(key) else { return nil }
            try m.allow(["user", "password_file", "password_env"])
            return DatabaseCredentials(user: try m.string("user"), password: try m.secret("password"))
        }
        guard let writer = try credentials("writer") else { throw dbMap.error("writer", "is required") }
        let database = DatabaseSettings(endpoint: endpoint, database: try dbMap.optionalString("database") ?? "countersign",
                                        owner: try credentials("owner"), writer: writer, reader: try credentials("reader"))

        var ledger = LedgerSettings.defaults
        if let ledgerMap = try top.optionalMap("ledger") {
            try ledgerMap.allow(["origin", "checkpoint_interval_ms"])
            ledger.origin = try ledgerMap.optionalString("origin") ?? ledger.origin
            ledger.checkpointIntervalMs = try ledgerMap.int("checkpoint_interval_ms", default: ledger.checkpointIntervalMs, in: 10...60_000)
            guard !ledger.origin.isEmpty, !ledger.origin.contains("\n") else {
                throw ledgerMap.error("origin", "must be one non-empty line")
            }
        }
        var policy = PolicySettings.defaults
        if let policyMap = try top.optionalMap("policy") {
            try policyMap.allow(["file"])
            policy.file = try policyMap.optionalPath("file")
        }
        var alerts = AlertSettings.defaults
        if let alertsMap = try top.optionalMap("alerts") {
            try alertsMap.allow(["webhooks", "queue_capacity", "max_attempts", "initial_backoff_ms", "timeout_ms"])
            alerts.queueCapacity = try alertsMap.int("queue_capacity", default: alerts.queueCapacity, in: 1...1_000_000)
            alerts.maxAttempts = try alertsMap.int("max_attempts", default: alerts.maxAttempts, in: 1...100)
            alerts.initialBackoffMs = try alertsMap.int("initial_backoff_ms", default: alerts.initialBackoffMs, in: 1...600_000)
            alerts.timeoutMs = try alertsMap.int("timeout_ms", default: alerts.timeoutMs, in: 10...600_000)
            if alertsMap.entries["webhooks"] != nil {
                for (index, item) in try alertsMap.sequence("webhooks").enumerated() {
                    let w = try YAMLMap(item, path: "alerts.webhooks[\(index)]", base: baseDirectory)
                    try w.allow(["url", "url_file", "url_env", "events"])
                    let address: Webhook.Address
                    if let url = try w.optionalString("url") {
                        if w.entries["url_file"] != nil || w.entries["url_env"] != nil {
                            throw w.error("url", "give url, url_file or url_env, only one")
                        }
                        guard url.hasPrefix("https://") || url.hasPrefix("http://") else {
                            throw w.error("url", "must be an http:// or https:// URL")
                        }
                        address = .literal(url)
                    } else {
                        address = .secret(try w.secret("url"))
                    }
                    var events = Set(AlertEvent.allCases)
                    if let names = try w.optionalStrings("events") {
                        events = try Set(names.enumerated().map { i, name in
                            guard let event = AlertEvent(rawValue: name) else {
                                throw w.error("events[\(i)]", "must be one of \(AlertEvent.allCases.map(\.rawValue).joined(separator: ", ")), not '\(name)'")
                            }
                            return event
                        })
                    }
                    alerts.webhooks.append(Webhook(address: address, events: events))
                }
            }
        }
        return CountersignConfiguration(node: node, tls: tls, limits: limits, principals: principals, token: token,
                                        database: database, ledger: ledger, policy: policy, alerts: alerts)
    }
}

/// A YAML mapping with typed, path-aware accessors.
private struct YAMLMap {
    let entries: [String: Node]
    let path: String
    let base: String

    init(_ node: Node, path: String, base: String) throws {
        guard let mapping = node.mapping else {
            throw ConfigurationError(key: path.isEmpty ? "(top level)" : path, message: "must be a mapping of keys to values")
        }
        var entries: [String: Node] = [:]
        for (key, value) in mapping {
            guard let name = key.string else { throw ConfigurationError(key: path, message: "keys must be strings") }
            guard entries.updateValue(value, forKey: name) == nil else {
                throw ConfigurationError(key: Self.join(path, name), message: "appears twice")
            }
        }
        self.entries = entries
        self.path = path
        self.base = base
    }

    static func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func error(_ key: String, _ message: String) -> ConfigurationError {
        ConfigurationError(key: Self.join(path, key), message: message)
    }

    func allow(_ keys: Set<String>) throws {
        for key in entries.keys.sorted() where !keys.contains(key) {
            throw error(key, "unknown key (known here: \(keys.sorted().joined(separator: ", ")))")
        }
    }

    func map(_ key: String) throws -> YAMLMap {
        guard let m = try optionalMap(key) else { throw error(key, "is required") }
        return m
    }

    func optionalMap(_ key: String) throws -> YAMLMap? {
        guard let node = entries[key] else { return nil }
        return try YAMLMap(node, path: Self.join(path, key), base: base)
    }

    func sequence(_ key: String) throws -> [Node] {
        guard let node = entries[key] else { throw error(key, "is required") }
        guard let seq = node.sequence else { throw error(key, "must be a list") }
        return Array(seq)
    }

    func optionalString(_ key: String) throws -> String? {
        guard let node = entries[key] else { return nil }
        guard let scalar = node.scalar else { throw error(key, "must be a single value") }
        return scalar.string
    }

    func string(_ key: String) throws -> String {
        guard let s = try optionalString(key) else { throw error(key, "is required") }
        guard !s.isEmpty else { throw error(key, "must not be empty") }
        return s
    }

    func optionalStrings(_ key: String) throws -> [String]? {
        guard let node = entries[key] else { return nil }
        guard let seq = node.sequence else { throw error(key, "must be a list of strings") }
        return try seq.enumerated().map { i, item in
            guard let s = item.scalar?.string, !s.isEmpty else { throw error("\(key)[\(i)]", "must be a non-empty string") }
            return s
        }
    }

    func optionalInt(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let text = try optionalString(key) else { return nil }
        guard let value = Int(text.replacingOccurrences(of: "_", with: "")) else { throw error(key, "must be a whole number, not '\(text)'") }
        guard range.contains(value) else { throw error(key, "must be from \(range.lowerBound) to \(range.upperBound), not \(value)") }
        return value
    }

    func int(_ key: String, default value: Int, in range: ClosedRange<Int>) throws -> Int {
        try optionalInt(key, in: range) ?? value
    }

    func optionalPath(_ key: String) throws -> String? {
        guard let p = try optionalString(key), !p.isEmpty else { return nil }
        return p.hasPrefix("/") ? p : URL(fileURLWithPath: base).appendingPathComponent(p).standardizedFileURL.path
    }

    func path(_ key: String) throws -> String {
        guard let p = try optionalPath(key) else { throw error(key, "is required") }
        return p
    }

    func hostPort(_ key: String) throws -> HostPort {
        guard let hp = try optionalHostPort(key) else { throw error(key, "is required") }
        return hp
    }

    func optionalHostPort(_ key: String) throws -> HostPort? {
        guard let text = try optionalString(key) else { return nil }
        guard let hp = HostPort(text) else { throw error(key, "must be host:port, not '\(text)'") }
        return hp
    }

    func optionalPin(_ key: String) throws -> String? {
        guard let text = try optionalString(key) else { return nil }
        let pin = text.lowercased()
        guard pin.count == 64, pin.allSatisfy({ $0.isHexDigit }) else {
            throw error(key, "must be the SHA-256 of a SubjectPublicKeyInfo: 64 hex digits")
        }
        return pin
    }

    func pin(_ key: String) throws -> String {
        guard let p = try optionalPin(key) else { throw error(key, "is required") }
        return p
    }

    /// `<name>_file` or `<name>_env`, exactly one of them.
    func secret(_ name: String) throws -> SecretSource {
        let file = try optionalPath("\(name)_file")
        let env = try optionalString("\(name)_env")
        switch (file, env) {
        case (let f?, nil): return .file(f)
        case (nil, let e?): return .environment(e)
        case (nil, nil): throw error("\(name)_file", "is required (or \(name)_env); secrets never go in this file")
        case (_?, _?): throw error("\(name)_file", "give \(name)_file or \(name)_env, not both")
        }
    }
}
