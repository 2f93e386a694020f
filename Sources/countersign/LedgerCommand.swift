import ArgumentParser
import CountersignConfig
import CountersignLedger
import CountersignSigner
import CountersignVerify
import Foundation
import Logging

/// `countersign ledger …`: the tamper-evident ledger's operator and auditor commands.
struct LedgerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger",
        abstract: "Migrate, verify, export and prove the tamper-evident ledger.",
        subcommands: [Migrate.self, Verify.self, Export.self, Prove.self, CheckpointCommand.self, BenchLedger.self]
    )

    static func load(_ option: ConfigOption) throws -> CountersignConfiguration {
        try CountersignConfiguration.load(path: try option.resolvedPath())
    }

    static var logger: Logger {
        var l = Logger(label: "countersign.ledger") { StreamLogHandler.standardError(label: $0) }
        l.logLevel = .warning
        return l
    }

    static func fail(_ error: any Error) -> ExitCode {
        fail("\(error)")
    }

    static func fail(_ message: String) -> ExitCode {
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
        return ExitCode(2)
    }

    /// A progress bar on stderr (only when stderr is a terminal, else a line every few seconds).
    final class Progress: @unchecked Sendable {
        let label: String
        let start = Date()
        var last = Date.distantPast
        let tty = isatty(2) != 0
        let lock = NSLock()
        init(_ label: String) { self.label = label }
        func update(_ done: UInt64, _ total: UInt64, unit: String = "entries") {
            lock.lock()
            defer { lock.unlock() }
            let now = Date()
            guard now.timeIntervalSince(last) >= (tty ? 0.1 : 5) || (total > 0 && done >= total) else { return }
            last = now
            let rate = Double(done) / max(now.timeIntervalSince(start), 0.001)
            let fraction = total > 0 ? min(1, Double(done) / Double(total)) : 0
            let width = 30
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            let line = String(format: "%@ [%@] %3.0f%% %llu/%llu %@ (%.0f/s)", label, bar, fraction * 100, done, total, unit, rate)
            FileHandle.standardError.write(Data(((tty ? "\r" : "") + line + (tty ? "" : "\n")).utf8))
        }
        func finish() {
            if tty { FileHandle.standardError.write(Data("\n".utf8)) }
        }
    }

    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Apply the ledger's schema migrations as the owner role (database.owner).")
        @OptionGroup var config: ConfigOption

        func run() async throws {
            let cfg = try LedgerCommand.load(config)
            do {
                let applied = try await Ledger.migrate(database: cfg.database, logger: LedgerCommand.logger)
                print(applied.isEmpty ? "ledger schema is current" : "applied migrations \(applied.map(String.init).joined(separator: ", "))")
            } catch {
                throw LedgerCommand.fail(error)
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify the whole ledger: indices, leaf hashes, signatures, epochs, stored subtrees and every checkpoint.",
            discussion: """
                Reads the database with the reader role (database.reader), or an export file with --file. \
                Trusts the keys in the --trusted-key files (PEM PUBLIC KEY, DER SubjectPublicKeyInfo) and the \
                keys that key-event entries signed by a trusted key introduce. Prints the first index where \
                anything is wrong and exits 1; exits 0 when everything verifies.

                The ledger's own checkpoints cannot show that its tail was cut back, checkpoints and all, \
                and written anew: keep a checkpoint now and then (`countersign ledger checkpoint > FILE`, or \
                one a client received) and give it with --checkpoint FILE. It must be signed by a trusted key \
                and the ledger must hold its tree at its size.
                """)
        @OptionGroup var config: ConfigOption
        @Option(name: .long, help: "An export file made by `countersign ledger export` (default: read the database).")
        var file: String?
        @Option(name: .customLong("trusted-key"), help: "PEM file of a public key trusted from index 0 (repeatable).")
        var trustedKeys: [String] = []
        @Option(name: .long, help: "Expected checkpoint origin (default: ledger.origin of the configuration; '' to skip).")
        var origin: String?
        @Option(name: .customLong("checkpoint"), help: ArgumentHelp(
            "A checkpoint kept outside the ledger, as `countersign ledger checkpoint` prints it (repeatable).",
            valueName: "file"))
        var givenCheckpoints: [String] = []

        func run() async throws {
            let given: [StoredCheckpoint]
            do {
                given = try givenCheckpoints.map { try StoredCheckpoint(printedFile: $0) }
            } catch {
                throw LedgerCommand.fail(error)
            }
            var keys = TrustedKeys()
            for path in trustedKeys {
                guard let pem = try? String(contentsOfFile: path, encoding: .utf8) else { throw LedgerCommand.fail(LedgerError(.invalidArgument, "cannot read \(path)")) }
                do {
                    for k in try TrustedKeys.keys(fromPEM: pem) { keys.insert(k) }
                } catch {
                    throw LedgerCommand.fail(error)
                }
            }
            guard !keys.keys.isEmpty else {
                throw ValidationError("give at least one --trusted-key FILE (the ledger's first signing key)")
            }
            let progress = Progress("verify")
            let report: VerificationReport
            let start = Date()
            do {
                if let file {
                    let cfg = try? LedgerCommand.load(config)
                    let expected = origin ?? cfg?.ledger.origin
                    report = try LedgerAudit.verifyFile(path: file, trustedKeys: keys, origin: expected == "" ? nil : expected, given: given) {
                        progress.update($0, $1, unit: "bytes")
                    }
                } else {
                    let cfg = try LedgerCommand.load(config)
                    let expected = origin ?? cfg.ledger.origin
                    report = try await LedgerAudit.verifyDatabase(database: cfg.database, trustedKeys: keys, origin: expected == "" ? nil : expected,
                                                                  given: given, logger: LedgerCommand.logger) { progress.update($0, $1) }
                }
            } catch {
                progress.finish()
                throw LedgerCommand.fail(error)
            }
            progress.finish()
            let seconds = Date().timeIntervalSince(start)
            if let problem = report.problem {
                print("FAILED at index \(problem.index): \(problem.message)")
                print("(the first problem found; \(report.checkpoints) checkpoints had verified before it; nothing after it was checked)")
                throw ExitCode(1)
            }
            print("OK: \(report.entries) entries, \(report.checkpoints) checkpoints, \(report.storedNodes) stored subtree hashes verified")
            if !given.isEmpty {
                print("the ledger holds the tree of each checkpoint given (sizes \(given.map { "\($0.treeSize)" }.joined(separator: ", ")))")
            }
            print("root \(Hex.encode(report.root)); trusted keys: \(report.trustedKeyIDs.joined(separator: ", "))")
            print(String(format: "%.2f s, %.0f entries/s", seconds, Double(report.entries) / max(seconds, 0.001)))
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the whole ledger (entries and checkpoints) to a file for offline verification (format: docs/ledger.md).")
        @OptionGroup var config: ConfigOption
        @Option(name: [.short, .long], help: "Output file (default: standard output).")
        var output: String?

        func run() async throws {
            let cfg = try LedgerCommand.load(config)
            let handle: FileHandle
            if let output {
                guard FileManager.default.createFile(atPath: output, contents: nil), let h = FileHandle(forWritingAtPath: output) else {
                    throw LedgerCommand.fail(LedgerError(.invalidArgument, "cannot write \(output)"))
                }
                handle = h
            } else {
                handle = FileHandle.standardOutput
            }
            let progress = Progress("export")
            do {
                let (n, c) = try await LedgerAudit.export(database: cfg.database, to: handle, logger: LedgerCommand.logger) { progress.update($0, $1) }
                progress.finish()
                if output != nil { try handle.close() }
                FileHandle.standardError.write(Data("exported \(n) entries and \(c) checkpoints\n".utf8))
            } catch {
                progress.finish()
                throw LedgerCommand.fail(error)
            }
        }
    }

    struct Prove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print an inclusion proof of one entry that a third party can check (JSON).",
            discussion: "Without --tree-size the proof is for the newest signed checkpoint, which is printed with it.")
        @OptionGroup var config: ConfigOption
        @Option(name: .long, help: "The entry's index.") var index: UInt64
        @Option(name: .customLong("tree-size"), help: "Tree size of the proof (default: the newest checkpoint's).") var treeSize: UInt64?

        func run() async throws {
            let cfg = try LedgerCommand.load(config)
            do {
                let ledger = try Ledger(database: cfg.database, settings: cfg.ledger, role: .reader, logger: LedgerCommand.logger)
                let (checkpoint, size, entry, proof, root) = try await ledger.withRunning {
                    let checkpoint = try? await ledger.getCheckpoint()
                    guard let size = treeSize ?? checkpoint?.treeSize else {
                        throw LedgerError(.notFound, "no checkpoint yet: give --tree-size")
                    }
                    let entry = try await ledger.entry(at: index)
                    let proof = try await ledger.proveInclusion(index: index, treeSize: size)
                    let root = try await ledger.rootHash(treeSize: size)
                    return (checkpoint, size, entry, proof, root)
                }
                var object: [String: Any] = [
                    "index": index,
                    "tree_size": size,
                    "statement_b64": Data(entry.statement.payload).base64EncodedString(),
                    "payload_type": entry.statement.payloadType,
                    "signature_b64": Data(entry.statement.signature).base64EncodedString(),
                    "key_id": entry.statement.keyID,
                    "leaf_hash": Hex.encode(entry.leafHash),
                    "proof": proof.map { Hex.encode($0) },
                    "root_hash": Hex.encode(root),
                ]
                if let checkpoint, checkpoint.treeSize == size {
                    object["checkpoint_b64"] = Data(checkpoint.body).base64EncodedString()
                    object["checkpoint_signature_b64"] = Data(checkpoint.signature).base64EncodedString()
                    object["checkpoint_key_id"] = checkpoint.keyID
                }
                let json = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
                print(String(decoding: json, as: UTF8.self))
            } catch {
                throw LedgerCommand.fail(error)
            }
        }
    }

    struct CheckpointCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "checkpoint",
            abstract: "Print the newest signed checkpoint, or sign a new one of the ledger as it is now (--sign).",
            discussion: """
                Without --sign it reads the database with the reader role (database.reader) and prints the \
                newest checkpoint: the exact signed text (origin, tree size, base64 root hash), then a line with \
                its payload type, key id and base64 signature.

                The database accepts a checkpoint only with the epoch of the live ledger lease (the same fence \
                as appends). While a node holds the lease, only that node can add one: its checkpointer signs a \
                checkpoint at most ledger.checkpoint_interval_ms after every new entry, so the newest one is never \
                further behind than that; GetCheckpoint (countersign's Audit service) and this command serve it.

                With --sign, for a ledger that no node is serving (after a shutdown, before a verify or an \
                export): it opens the token (token.*) and the keyring as `countersign keys` reads it (the \
                ledger's key events; the active key signs), takes the free \
                lease for a moment under its own holder name (this bumps the epoch), signs and stores a \
                checkpoint of every committed entry with the writer role (database.writer), gives the lease \
                back, and prints the checkpoint. It refuses while a node holds the lease.
                """)
        @OptionGroup var config: ConfigOption
        @Flag(name: .long, help: "Sign a checkpoint of the ledger as it is now (needs the token and the writer role; refused while a node holds the lease).")
        var sign = false
        @Option(name: .customLong("key-events"), help: ArgumentHelp(
            "With --sign: take the keyring from this key-event file instead of the ledger.",
            discussion: "Default: the ledger's key-event entries, or the ceremony's keyring/key-events.jsonl beside the configuration while the ledger has none."))
        var keyEvents: String?

        func run() async throws {
            let path = try config.resolvedPath()
            let cfg = try CountersignConfiguration.load(path: path)
            if sign {
                try await signNow(cfg, keyEvents: keyEvents)
                return
            }
            do {
                let ledger = try Ledger(database: cfg.database, settings: cfg.ledger, role: .reader, logger: LedgerCommand.logger)
                Self.show(try await ledger.withRunning { try await ledger.getCheckpoint() })
            } catch let e as LedgerError where e.code == .notFound {
                throw LedgerCommand.fail("""
                    no checkpoint yet: a serving node signs one at most ledger.checkpoint_interval_ms after the first \
                    entry; with no node serving, `countersign ledger checkpoint --sign` signs one
                    """)
            } catch {
                throw LedgerCommand.fail(error)
            }
        }

        static func show(_ cp: StoredCheckpoint) {
            print(cp.printed, terminator: "")
        }

        /// The keyring as `countersign keys` reads it (``LedgerKeyEventLog/keyring(orCeremony:)``), or
        /// `--key-events` when given; its active key signs.
        static func loadKeyring(_ signer: TokenSigner, _ ledger: Ledger, _ cfg: CountersignConfiguration, keyEvents: String?,
                                logger: Logger) async throws {
            let (log, source): (any KeyEventLog, String) = if let keyEvents {
                (FileKeyEventLog(path: keyEvents), keyEvents)
            } else {
                try await LedgerKeyEventLog(ledger: ledger).keyring(orCeremony: FileKeyEventLog(path: cfg.ceremonyKeyEventsPath))
            }
            do {
                try await KeyCustodian(signer: signer, log: log, settings: cfg.token, logger: logger).load()
                _ = try await signer.activeKeyID
            } catch {
                throw LedgerCommand.fail("the keyring (\(source)) gives no active key: \(error)")
            }
        }

        func signNow(_ cfg: CountersignConfiguration, keyEvents: String?) async throws {
            var logger = Logger(label: "countersign.ledger") { StreamLogHandler.standardError(label: $0) }
            logger.logLevel = .error
            let signer: TokenSigner
            do {
                signer = try TokenSigner(settings: cfg.token, logger: logger)
            } catch {
                throw LedgerCommand.fail(error)
            }
            defer { signer.shutdown() }
            let availability = await signer.waitUntilAvailable(timeoutSeconds: 5)
            guard availability.isAvailable else {
                throw LedgerCommand.fail(LedgerError(.unavailable, "the token '\(cfg.token.tokenLabel)' is \(availability)"))
            }
            do {
                let ledger = try Ledger(database: cfg.database, settings: cfg.ledger, role: .writer, signer: signer, logger: LedgerCommand.logger)
                let holder = "countersign ledger checkpoint (\(cfg.node.name), pid \(getpid()))"
                let (checkpoint, made) = try await ledger.withRunning { () async throws -> (StoredCheckpoint, Bool) in
                    let size = try await ledger.size()
                    if let latest = try? await ledger.getCheckpoint(), latest.treeSize >= size { return (latest, false) }
                    let lease = try await ledger.currentLease()
                    if lease.isLive {
                        throw LedgerCommand.fail("""
                            node '\(lease.holder)' holds the ledger lease (epoch \(lease.epoch), until \(lease.expiresAt)); the database \
                            accepts a checkpoint only with the live lease's epoch, so only that node can sign one. Its checkpointer \
                            signs one at most \(cfg.ledger.checkpointIntervalMs) ms after every new entry: run \
                            `countersign ledger checkpoint` (without --sign) to print the newest, or call GetCheckpoint.
                            """)
                    }
                    do {
                        _ = try await ledger.acquireLease(holder: holder, ttl: .seconds(30))
                    } catch let e as LedgerError where e.code == .leaseLost {
                        throw LedgerCommand.fail("a node took the ledger lease just now; it makes the checkpoints: \(e.message)")
                    }
                    do {
                        try await Self.loadKeyring(signer, ledger, cfg, keyEvents: keyEvents, logger: logger)
                        let made = try await ledger.checkpoint()
                        try await ledger.releaseLease()
                        return (made, true)
                    } catch {
                        try? await ledger.releaseLease()
                        throw error
                    }
                }
                if !made { FileHandle.standardError.write(Data("the newest checkpoint already covers every entry: none signed\n".utf8)) }
                Self.show(checkpoint)
            } catch let e as ExitCode {
                throw e
            } catch {
                throw LedgerCommand.fail(error)
            }
        }
    }
}
