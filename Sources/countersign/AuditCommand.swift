import ArgumentParser
import CountersignClient
import CountersignLedger
import CountersignVerify
import CountersignWire
import Crypto
import Foundation

/// `countersign audit`: what an auditor does over the wire, trusting nothing but the first key.
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Check decisions and the ledger over the wire, as an auditor, trusting only the first key.",
        discussion: """
            Talks to a node over mutual TLS (by default with the auditor's certificate) and checks what it \
            answers with nothing but the first signing key's public key (--first-key, obtained out of band), \
            from which the key transitions of ListKeys are followed. Each check is printed; the exit status \
            is 0 when all hold, 1 at the first that does not.

            Checkpoints are kept in the form `countersign ledger checkpoint` prints (--keep-checkpoint); \
            `audit checkpoint --since FILE` proves over the wire that the ledger still extends one, and \
            `ledger verify --checkpoint FILE` checks it against the whole ledger.
            """,
        subcommands: [DecisionCheck.self, CheckpointCheck.self])

    /// Options of every audit subcommand.
    struct Options: ParsableArguments {
        @OptionGroup var client: ClientOptions
        @Option(name: .customLong("first-key"), help: "The first signing key's public key, PEM or DER.") var firstKey: String
        @Option(name: .customLong("keep-checkpoint"), help: ArgumentHelp("Write the verified checkpoint here.", valueName: "file"))
        var keepCheckpoint: String?
    }

    struct DecisionCheck: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "decision",
            abstract: "Fetch a decision by request id and verify it: signature, statement, ledger inclusion.",
            discussion: """
                With --plan and --request, the statement must also bind that plan file's SHA-256 and those \
                words. The checkpoint is the newest one that covers the decision.
                """)

        @OptionGroup var options: Options
        @Option(name: .customLong("request-id"), help: "The decision's request id.") var requestID: String
        @Option(help: "The plan file the decision must bind (its SHA-256).") var plan: String?
        @Option(help: "The person's words the decision must bind (their SHA-256).") var request: String?

        func run() async throws {
            let planBytes: [UInt8]? = try plan.map { path in
                guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read the plan \(path)") }
                return Array(data)
            }
            let audit = try await AuditSession(options)
            var decision = Decision()
            await audit.check("decision") {
                decision = try await audit.connection.decision(requestID: requestID)
                guard decision.payloadType == PayloadType.decision else { throw AuditFailure("payload type \(decision.payloadType)") }
                try audit.verify(SignedStatement(payloadType: decision.payloadType, payload: decision.statement,
                                                      signature: decision.signature, keyID: decision.keyID))
                return "\(decision.verdict), signed by key \(decision.keyID.prefix(16))…, ledger index \(decision.ledgerIndex)"
            }
            await audit.check("statement") {
                let s = try DecisionStatement(protobuf: decision.statement)
                guard s.requestID == requestID else { throw AuditFailure("it is for request \(s.requestID)") }
                guard s.verdict == decision.verdict, s.keyID == decision.keyID else {
                    throw AuditFailure("the reply's verdict or key differs from the signed statement's")
                }
                if let planBytes, s.planSHA256 != Array(SHA256.hash(data: planBytes)) {
                    throw AuditFailure("it binds plan \(Hex.encode(s.planSHA256)), not \(plan ?? "")'s")
                }
                if let request, s.userRequestSHA256 != Array(SHA256.hash(data: Array(request.utf8))) {
                    throw AuditFailure("it binds other words than --request's")
                }
                var bound = ["agent \(s.agent)", "owner \(s.owner)", "plan \(Hex.encode(s.planSHA256).prefix(16))…"]
                if planBytes != nil { bound.append("the plan file") }
                if request != nil { bound.append("the words") }
                return "binds request \(s.requestID), " + bound.joined(separator: ", ")
                    + "; \(s.findings.count) finding(s) listed" + (s.findingsOmitted > 0 ? ", \(s.findingsOmitted) omitted" : "")
            }
            await audit.checkCheckpoint(covering: decision.ledgerIndex)
            await audit.check("inclusion") {
                let cp = audit.checkpoint!
                let proof = try await audit.connection.proveInclusion(leafIndex: decision.ledgerIndex, treeSize: cp.treeSize)
                try Merkle.verifyInclusion(leafHash: Merkle.leafHash(bytes: decision.statement), index: decision.ledgerIndex,
                                           treeSize: cp.treeSize, proof: proof.hashes, root: cp.rootHash)
                return "index \(decision.ledgerIndex) is in the tree of size \(cp.treeSize) (\(proof.hashes.count) hashes)"
            }
            try await audit.finish(keeping: options.keepCheckpoint)
        }
    }

    struct CheckpointCheck: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "checkpoint",
            abstract: "Fetch the newest signed checkpoint, verify it, and prove that it extends the ones kept before.",
            discussion: """
                For each --since FILE (a checkpoint kept earlier), its signature must verify and the node \
                must prove, with an RFC 9162 consistency proof checked here, that the newest tree extends it: \
                nothing before it was changed, removed or reordered since. Keep the newest with \
                --keep-checkpoint and give it as --since next time.
                """)

        @OptionGroup var options: Options
        @Option(name: .customLong("since"), help: ArgumentHelp("A checkpoint kept earlier, as `ledger checkpoint` prints it (repeatable).", valueName: "file"))
        var since: [String] = []

        func run() async throws {
            let kept: [(path: String, checkpoint: StoredCheckpoint)]
            do {
                kept = try since.map { ($0, try StoredCheckpoint(printedFile: $0)) }
            } catch let error as LedgerError {
                throw ValidationError(error.message)
            }
            let audit = try await AuditSession(options)
            await audit.checkCheckpoint(covering: nil)
            for (path, old) in kept {
                await audit.check("since \(path)") {
                    try audit.verify(old.statement)
                    let new = audit.checkpoint!
                    guard old.treeSize <= new.treeSize else {
                        throw AuditFailure("it has \(old.treeSize) entries; the newest checkpoint only \(new.treeSize): the ledger was cut back")
                    }
                    guard old.treeSize > 0 else { return "signed by key \(old.keyID.prefix(16))…; an empty tree, which every tree extends" }
                    let proof = try await audit.connection.proveConsistency(firstSize: old.treeSize, secondSize: new.treeSize)
                    do {
                        try Merkle.verifyConsistency(firstSize: old.treeSize, secondSize: new.treeSize, firstRoot: old.rootHash,
                                                     secondRoot: new.rootHash, proof: proof.hashes)
                    } catch {
                        throw AuditFailure("the tree of size \(new.treeSize) does not extend the one of size \(old.treeSize): \(error)")
                    }
                    return "signed by key \(old.keyID.prefix(16))…; the tree of size \(new.treeSize) extends its \(old.treeSize) entries (\(proof.hashes.count) hashes)"
                }
            }
            try await audit.finish(keeping: options.keepCheckpoint)
        }
    }
}

/// One run of an audit subcommand: the connection, the key set followed from the first key, the
/// checks printed as they go, and the first failure.
final class AuditSession {
    let connection: CountersignClient
    /// The keys followed from the first key.
    private var keys: KeyChain.KeySet?
    /// The checkpoint that ``checkCheckpoint(covering:)`` verified.
    private(set) var checkpoint: CountersignWire.Checkpoint?
    private(set) var failed = false

    /// Connects (as the auditor unless told otherwise) and follows `ListKeys` from the first key.
    init(_ options: AuditCommand.Options) async throws {
        let first = try KeyFormat.readPublicKey(path: options.firstKey)
        connection = try await CountersignClient.connect(try options.client.clientConfiguration(defaultIdentity: "auditor"))
        await check("keys") {
            let listed: ListKeysResponse = try await connection.call(Method.auditListKeys, ListKeysRequest())
            let set = try KeyChain.verify(firstKeySPKI: first, listed: listed)
            keys = set
            return "\(set.keys.count) key(s) from the first key \(KeyID.of(spkiDER: first).prefix(16))…, \(set.transitions) transition(s) verified"
        }
    }

    /// Verifies a statement with the keys followed from the first key.
    func verify(_ statement: SignedStatement) throws {
        guard let keys else { throw AuditFailure("no verified keys") }
        try keys.verify(statement)
    }

    /// Runs one check unless one has failed already, and prints its outcome.
    func check(_ label: String, _ body: () async throws -> String) async {
        guard !failed else { return }
        do {
            print("ok      \(label): \(try await body())")
        } catch {
            failed = true
            print("FAILED  \(label): \(error)")
        }
    }

    /// Fetches the newest checkpoint (one that covers `index`, if given) and verifies it.
    func checkCheckpoint(covering index: UInt64?) async {
        await check("checkpoint") {
            let (cp, parsed) = try await connection.verifiedCheckpoint(covering: index, verify: verify)
            checkpoint = cp
            return "\(parsed.origin), tree size \(parsed.treeSize), root \(Hex.encode(parsed.rootHash).prefix(16))…, signed by key \(cp.keyID.prefix(16))…"
        }
    }

    /// Closes the connection, keeps the verified checkpoint when asked and all checks held, and
    /// exits 1 if one failed.
    func finish(keeping path: String?) async throws {
        await connection.close()
        if let path, !failed, let cp = checkpoint {
            let stored = StoredCheckpoint(body: cp.checkpoint, treeSize: cp.treeSize, rootHash: cp.rootHash, payloadType: PayloadType.checkpoint,
                                          signature: cp.signature, keyID: cp.keyID, epoch: 0)
            do {
                try Data(stored.printed.utf8).write(to: URL(fileURLWithPath: path))
            } catch {
                throw ValidationError("cannot write \(path): \(error)")
            }
            print("kept    the checkpoint in \(path)")
        }
        if failed { throw ExitCode.failure }
    }
}

extension CountersignClient {
    /// The newest signed checkpoint, waiting up to 10 s for one that covers `index` when given (a
    /// node signs one at most a second after an entry); `verify` checks its signature, and its
    /// signed text must match its size and root. `countersign audit` and `countersign demo` use it.
    func verifiedCheckpoint(covering index: UInt64?, verify: (SignedStatement) throws -> Void) async throws
        -> (checkpoint: CountersignWire.Checkpoint, parsed: CountersignVerify.Checkpoint) {
        var cp = try await checkpoint()
        if let index {
            let end = ContinuousClock.now + .seconds(10)
            while cp.treeSize <= index, ContinuousClock.now < end {
                try await Task.sleep(for: .milliseconds(200))
                cp = try await checkpoint()
            }
            guard cp.treeSize > index else { throw AuditFailure("no checkpoint covers index \(index) within 10 s") }
        }
        do {
            try verify(SignedStatement(payloadType: PayloadType.checkpoint, payload: cp.checkpoint, signature: cp.signature, keyID: cp.keyID))
        } catch {
            throw AuditFailure("the checkpoint's signature does not verify: \(error)")
        }
        let parsed = try CountersignVerify.Checkpoint(parsing: cp.checkpoint)
        guard parsed.treeSize == cp.treeSize, parsed.rootHash == cp.rootHash else {
            throw AuditFailure("the checkpoint's size or root differs from its signed text")
        }
        return (cp, parsed)
    }
}

/// A check of `countersign audit` that did not hold.
struct AuditFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
