import ArgumentParser
import CountersignConfig
import CountersignLedger
import CountersignSigner
import CountersignVerify
import CountersignWire
import Foundation
import Logging

/// `countersign keys …`: the key officers' tools.
struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Signing keys: list, first-key ceremony, rotation under dual control, export, offline chain check.",
        discussion: """
            Countersign signs every decision with a key that lives in a PKCS#11 token (SoftHSM in \
            development, an HSM in production) and never leaves it. The keyring is a chain of signed key \
            events: the first key's KEY_GENERATED event, rotation proposals, and KEY_TRANSITION events that the \
            old and the new key both sign, so that anyone who trusts only the first key can follow every \
            rotation (see `keys verify-chain`).

            These commands act on the token and on the key events in the ledger (entries of kind key-event) \
            directly; the ones that change the keyring take the ledger lease for the moment they need it, so \
            they refuse while a node is running: officers then rotate through its Custody service, \
            authenticated by their pinned officer certificates. A ceremony held before the database exists \
            writes a key-event file instead (--token-label … --key-events FILE); a node imports it into the \
            ledger when it starts.

            Typical life of a keyring:
              keys generate --officer officer-1             the first key (ceremony)
              keys export-public --first --output k0.pem    publish it; verifiers pin it
              keys propose-rotation --officer officer-1 --reason yearly
              keys approve-rotation --officer officer-2 PROPOSAL-ID
              keys verify-chain --first-key k0.pem          anyone, offline
            """,
        subcommands: [ListKeys.self, Generate.self, ExportPublic.self, VerifyChain.self, ProposeRotation.self, ApproveRotation.self]
    )
}

/// Options shared by the subcommands that open the token.
struct KeyringOptions: ParsableArguments {
    @OptionGroup var config: ConfigOption

    @Option(name: .customLong("key-events"), help: ArgumentHelp(
        "Use this key-event file instead of the ledger (JSON lines; a ceremony before the database exists).",
        discussion: "A node imports such a file into its ledger at start when the ledger has no key event yet."))
    var keyEvents: String?

    @Option(name: .customLong("token-label"), help: ArgumentHelp(
        "Use this token directly instead of the configuration's (for a ceremony before the server is configured).",
        discussion: "Then also give --module, --pin-file and --key-events (and --softhsm2-conf for SoftHSM)."))
    var tokenLabel: String?
    @Option(help: "PKCS#11 module (with --token-label).") var module: String?
    @Option(name: .customLong("softhsm2-conf"), help: "SoftHSM2 configuration (with --token-label).") var softHSM2Conf: String?
    @Option(name: .customLong("pin-file"), help: "File holding the user PIN (with --token-label).") var pinFile: String?

    /// An opened keyring: the custodian over the token and the key events.
    struct Opened {
        let custodian: KeyCustodian
        let signer: TokenSigner
        let token: TokenSettings
        /// Where the key events are, for people.
        let source: String
    }

    /// Opens the token and the key events, runs `body`, and closes them, whatever happens. The key
    /// events: a file (with --token-label or --key-events), else the ledger of the configuration
    /// (``LedgerKeyEventLog/keyring(orCeremony:)``). `writing` commands take the ledger lease for
    /// their operation (the epoch fence admits no other appends), import the ceremony's file when
    /// the ledger has no key event yet, and give the lease back.
    func with<T>(writing: Bool = false, _ body: (Opened) async throws -> T) async throws -> T {
        var logger = Logger(label: "countersign.keys")
        logger.logLevel = .error
        let token: TokenSettings
        var configuration: CountersignConfiguration?
        if let tokenLabel {
            guard let module, let pinFile, keyEvents != nil else {
                throw ValidationError("--token-label needs --module, --pin-file and --key-events")
            }
            token = TokenSettings(modulePath: module, softHSM2ConfPath: softHSM2Conf, tokenLabel: tokenLabel, pin: .file(pinFile))
        } else {
            let loaded = try CountersignConfiguration.load(path: try config.resolvedPath())
            configuration = loaded
            token = loaded.token
        }
        let signer = try TokenSigner(settings: token, logger: logger)
        defer { signer.shutdown() }
        let availability = await signer.waitUntilAvailable(timeoutSeconds: 5)
        guard availability.isAvailable else { throw ValidationError("the token '\(token.tokenLabel)' is \(availability)") }

        func run(_ log: any KeyEventLog, _ source: String) async throws -> T {
            let custodian = KeyCustodian(signer: signer, log: log, settings: token, logger: logger)
            try await custodian.load()
            return try await body(Opened(custodian: custodian, signer: signer, token: token, source: source))
        }
        if let keyEvents {
            try FileManager.default.createDirectory(atPath: URL(fileURLWithPath: keyEvents).deletingLastPathComponent().path,
                                                    withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            return try await run(FileKeyEventLog(path: keyEvents), keyEvents)
        }
        guard let configuration else { throw ValidationError("give --key-events or a configuration") }
        let ledger = try Ledger(database: configuration.database, settings: configuration.ledger, logger: logger)
        let ceremony = FileKeyEventLog(path: configuration.ceremonyKeyEventsPath)
        return try await ledger.withRunning {
            let log = LedgerKeyEventLog(ledger: ledger)
            guard writing else {
                let (readable, source) = try await log.keyring(orCeremony: ceremony)
                return try await run(readable, source)
            }
            do {
                try await ledger.acquireLease(holder: "countersign-keys", ttl: .seconds(60))
            } catch let error as LedgerError where error.code == .leaseLost {
                throw ValidationError("""
                    \(error.message).
                    A running node owns the ledger, so key changes go through it: officers call \
                    Custody.ProposeRotation and Custody.ApproveRotation with their pinned officer certificates \
                    (or stop the node for a local ceremony).
                    """)
            }
            do {
                try await log.importIfEmpty(from: ceremony, logger: logger)
                let result = try await run(log, "the ledger (\(configuration.database.database))")
                try await ledger.releaseLease()
                return result
            } catch {
                try? await ledger.releaseLease()
                throw error
            }
        }
    }
}

enum KeyFormat {
    static func date(_ ms: Int64) -> String {
        guard ms != 0 else { return "-" }
        let f = ISO8601DateFormatter()
        return f.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
    }

    static func readPublicKey(path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read \(path)") }
        if let text = String(data: data, encoding: .utf8), text.contains("-----BEGIN PUBLIC KEY-----") {
            let body = text.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
            guard let der = Data(base64Encoded: body) else { throw ValidationError("\(path): bad PEM") }
            return Array(der)
        }
        return Array(data)
    }

    static func pem(_ der: [UInt8]) -> String {
        let b64 = Data(der).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
        return "-----BEGIN PUBLIC KEY-----\n\(b64)\n-----END PUBLIC KEY-----\n"
    }
}

extension Keys {
    struct ListKeys: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list",
            abstract: "Show the keyring (active and retired keys, validity), open proposals and the token's keys.")

        @OptionGroup var keyring: KeyringOptions

        func run() async throws {
            try await keyring.with { try await show($0) }
        }

        func show(_ opened: KeyringOptions.Opened) async throws {
            let (custodian, signer, token) = (opened.custodian, opened.signer, opened.token)
            let listed = await custodian.listKeys()
            print("token \(token.tokenLabel) (\(token.modulePath)), key events: \(opened.source)")
            if listed.keys.isEmpty {
                print("\nThe keyring has no key yet. Run the ceremony: countersign keys generate --officer <id>")
            } else {
                print("\nKEYRING (oldest first)")
                for k in listed.keys {
                    print("  \(k.status == .active ? "ACTIVE " : "retired") \(k.keyID)")
                    print("          \(k.algorithm), valid \(KeyFormat.date(k.notBeforeUnixMs)) .. \(k.notAfterUnixMs == 0 ? "now" : KeyFormat.date(k.notAfterUnixMs))")
                }
                print("  \(listed.transitions.count) transition(s), each signed by the old and the new key")
                if await custodian.isRotationDue() {
                    print("  ! the active key is older than \(token.rotationDays) days: rotation is due")
                }
            }
            let proposals = await custodian.pendingProposals
            if !proposals.isEmpty {
                print("\nOPEN ROTATION PROPOSALS")
                let now = KeyCustodian.systemClock()
                for p in proposals {
                    let state = now > p.expiresAtUnixMs ? "expired" : "expires \(KeyFormat.date(p.expiresAtUnixMs))"
                    print("  \(p.proposalID)  by \(p.proposedBy), \(p.algorithm), \(state): \(p.reason)")
                }
            }
            let inKeyring = Set(listed.keys.map(\.keyID))
            let others = signer.tokenKeys.filter { !inKeyring.contains($0.keyID) }
            if !others.isEmpty {
                print("\nOTHER KEYS IN THE TOKEN (not part of the keyring; e.g. benchmark keys)")
                for k in others { print("  \(k.keyID)  \(k.algorithm.rawValue)  \(k.label)") }
            }
        }
    }

    struct Generate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "generate",
            abstract: "Key ceremony: generate the first signing key in the token (once per keyring).",
            discussion: """
                The key pair is generated inside the token (CKA_SENSITIVE, not extractable) and recorded as a \
                KEY_GENERATED event signed by itself. Publish its public key (keys export-public): verifiers \
                pin it. Later keys come only from rotations (propose-rotation + approve-rotation), never from \
                this command. With --if-missing it does nothing when the keyring already has a key (used by \
                the dev environment's hsm/dev-ceremony).
                """)

        @OptionGroup var keyring: KeyringOptions
        @Option(help: "Officer running the ceremony (recorded in the key event).") var officer: String = "ceremony"
        @Option(help: "ecdsa-p256 (default: token.key_algorithm) or rsa-pss-4096.") var algorithm: String?
        @Flag(help: "Succeed without doing anything when the keyring already has a key.") var ifMissing = false

        func run() async throws {
            let algo: KeyAlgorithm? = try algorithm.map {
                guard let a = KeyAlgorithm(rawValue: $0) else { throw ValidationError("unknown algorithm \($0)") }
                return a
            }
            try await keyring.with(writing: true) { opened in try await generate(opened, algo) }
        }

        func generate(_ opened: KeyringOptions.Opened, _ algo: KeyAlgorithm?) async throws {
            let custodian = opened.custodian
            if let active = await custodian.activeKey {
                if ifMissing {
                    print("keyring exists; active key \(active.keyID)")
                    return
                }
                throw ValidationError("the keyring already has an active key (\(active.keyID)); rotate it with propose-rotation and approve-rotation")
            }
            let key = try await custodian.bootstrap(by: officer, algorithm: algo)
            print("generated the first signing key in the token")
            print("  key id    \(key.keyID)")
            print("  algorithm \(key.algorithm)")
            print("  recorded  \(opened.source)")
            print("Publish it: countersign keys export-public --first --output first-key.pem")
        }
    }

    struct ExportPublic: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "export-public",
            abstract: "Print or write a public key (PEM, or DER with --der); the active key unless --key-id.")

        @OptionGroup var keyring: KeyringOptions
        @Option(name: .customLong("key-id"), help: "Key id (hex SHA-256 of the SPKI). Default: the active key.") var keyID: String?
        @Flag(help: "Use the first key of the keyring (the one verifiers pin).") var first = false
        @Flag(help: "Write DER instead of PEM.") var der = false
        @Option(help: "Write to this file instead of standard output.") var output: String?

        func run() async throws {
            try await keyring.with { try await export($0) }
        }

        func export(_ opened: KeyringOptions.Opened) async throws {
            let (custodian, signer) = (opened.custodian, opened.signer)
            let listed = await custodian.listKeys()
            let spki: [UInt8]
            if first {
                guard let f = await custodian.firstKeySPKI else { throw ValidationError("the keyring has no key yet") }
                spki = f
            } else if let keyID {
                if let k = listed.keys.first(where: { $0.keyID == keyID }) { spki = k.spkiDER }
                else if let k = signer.tokenKeys.first(where: { $0.keyID == keyID }) { spki = k.spkiDER }
                else { throw ValidationError("no key \(keyID) in the keyring or the token") }
            } else {
                guard let a = await custodian.activeKey else { throw ValidationError("the keyring has no key yet") }
                spki = a.spkiDER
            }
            let bytes: [UInt8] = der ? spki : Array(KeyFormat.pem(spki).utf8)
            if let output {
                try Data(bytes).write(to: URL(fileURLWithPath: output))
                print("wrote \(KeyID.of(spkiDER: spki)) to \(output)")
            } else if der {
                FileHandle.standardOutput.write(Data(bytes))
            } else {
                print(String(decoding: bytes, as: UTF8.self), terminator: "")
            }
        }
    }

    struct VerifyChain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify-chain",
            abstract: "Offline: follow every rotation from the first key's public key alone.",
            discussion: """
                Needs no token and no server: only the first key's public key (PEM or DER, obtained out of band) \
                and the key events (the ledger's key-event entries, or a key-event file). Every event must be signed by the key active at that \
                point; every transition by the old and the new key. Prints the key set it leads to, or the first \
                event that does not verify (exit status 1).
                """)

        @Option(name: .customLong("first-key"), help: "The first key's public key, PEM or DER.") var firstKey: String
        @OptionGroup var config: ConfigOption
        @Option(name: .customLong("key-events"), help: "A key-event file (JSON lines). Default: the key events in the configuration's ledger, read as the reader role.")
        var keyEvents: String?

        func run() async throws {
            let first = try KeyFormat.readPublicKey(path: firstKey)
            let events: [SignedStatement]
            if let keyEvents {
                events = try await FileKeyEventLog(path: keyEvents).readAll()
            } else {
                let configuration = try CountersignConfiguration.load(path: try config.resolvedPath())
                var logger = Logger(label: "countersign.keys")
                logger.logLevel = .error
                let ledger = try Ledger(database: configuration.database, settings: configuration.ledger,
                                        role: configuration.database.reader != nil ? .reader : .writer, logger: logger)
                events = try await ledger.withRunning { try await LedgerKeyEventLog(ledger: ledger).readAll() }
            }
            do {
                let set = try KeyChain.verify(firstKeySPKI: first, events: events)
                print("OK: \(events.count) key events verify from first key \(KeyID.of(spkiDER: first))")
                for k in set.keys {
                    let until = k.notAfterUnixMs.map(KeyFormat.date) ?? "now"
                    print("  \(k.isActive ? "ACTIVE " : "retired") \(k.keyID)  \(k.algorithmName)  \(KeyFormat.date(k.notBeforeUnixMs)) .. \(until)")
                }
            } catch let e as VerificationError {
                print("FAILED: \(e.message)")
                throw ExitCode(1)
            }
        }
    }

    struct ProposeRotation: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "propose-rotation",
            abstract: "Dual control, step 1: propose a new signing key.",
            discussion: """
                Records a ROTATION_PROPOSED event signed by the active key. A different officer must approve it \
                with approve-rotation within token.proposal_ttl_seconds. Here --officer is taken on trust (local \
                administration of the token); the server's Custody.ProposeRotation takes the officer from the \
                pinned officer certificate instead.
                """)

        @OptionGroup var keyring: KeyringOptions
        @Option(help: "Your officer principal id.") var officer: String
        @Option(help: "Why (recorded in the key events).") var reason: String
        @Option(help: "Algorithm of the new key. Default: token.key_algorithm.") var algorithm: String?

        func run() async throws {
            let algo: KeyAlgorithm? = try algorithm.map {
                guard let a = KeyAlgorithm(rawValue: $0) else { throw ValidationError("unknown algorithm \($0)") }
                return a
            }
            let p = try await keyring.with(writing: true) { try await $0.custodian.propose(by: officer, reason: reason, algorithm: algo) }
            print("proposal \(p.proposalID)")
            print("  by \(p.proposedBy), new key \(p.algorithm), expires \(KeyFormat.date(p.expiresAtUnixMs))")
            print("Another officer approves it: countersign keys approve-rotation --officer <id> \(p.proposalID)")
        }
    }

    struct ApproveRotation: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "approve-rotation",
            abstract: "Dual control, step 2: approve another officer's proposal; the key rotates now.",
            discussion: """
                Refused when you made the proposal yourself, when it has expired or was already used. The new key \
                is generated in the token; a KEY_TRANSITION event naming the old and the new key is signed by both \
                and recorded; the old key is retired (kept for verification). Here --officer is taken on trust; the \
                server's Custody.ApproveRotation authenticates the officer by certificate.
                """)

        @OptionGroup var keyring: KeyringOptions
        @Option(help: "Your officer principal id (not the proposer's).") var officer: String
        @Argument(help: "The proposal id printed by propose-rotation.") var proposalID: String

        func run() async throws {
            let r = try await keyring.with(writing: true) { try await $0.custodian.approve(proposalID: proposalID, by: officer) }
            print("rotated: new active key \(r.newKey?.keyID ?? "?") (\(r.newKey?.algorithm ?? "?"))")
            if let t = r.transition { print("  transition signed by \(t.signatures.map(\.keyID).joined(separator: " and "))") }
        }
    }
}
