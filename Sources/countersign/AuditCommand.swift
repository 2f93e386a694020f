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
        abstract: "Check a decision over the wire, as an auditor, trusting only the first key.",
        discussion: """
            Talks to a node over mutual TLS (by default with the auditor's certificate) and checks what it \
            answers with nothing but the first signing key's public key (--first-key, obtained out of band): \
            the key transitions of ListKeys from that key, the decision's signature and what its statement \
            binds, a signed checkpoint, and the decision's inclusion proof against it.
            """,
        subcommands: [DecisionCheck.self])

    struct DecisionCheck: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "decision",
            abstract: "Fetch a decision by request id and verify it: signature, statement, ledger inclusion.",
            discussion: """
                Exit status 0 when everything verifies, 1 when anything does not (each check is printed, \
                the failed one with its reason). With --plan and --request, the statement must also bind \
                that plan file's SHA-256 and those words. With --keep-checkpoint FILE the verified checkpoint \
                is written in the form `countersign ledger verify --checkpoint` reads: keep it, and any later \
                ledger must still hold its tree.
                """)

        @OptionGroup var client: ClientOptions
        @Option(name: .customLong("request-id"), help: "The decision's request id.") var requestID: String
        @Option(name: .customLong("first-key"), help: "The first signing key's public key, PEM or DER.") var firstKey: String
        @Option(help: "The plan file the decision must bind (its SHA-256).") var plan: String?
        @Option(help: "The person's words the decision must bind (their SHA-256).") var request: String?
        @Option(name: .customLong("keep-checkpoint"), help: ArgumentHelp("Write the verified checkpoint here.", valueName: "file"))
        var keepCheckpoint: String?

        func run() async throws {
            let first = try KeyFormat.readPublicKey(path: firstKey)
            let planBytes: [UInt8]? = try plan.map { path in
                guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read the plan \(path)") }
                return Array(data)
            }
            let connection = try await CountersignClient.connect(try client.clientConfiguration(defaultIdentity: "auditor"))
            var failed = false
            func check(_ label: String, _ body: () async throws -> String) async {
                guard !failed else { return }
                do {
                    print("ok      \(label): \(try await body())")
                } catch {
                    failed = true
                    print("FAILED  \(label): \(error)")
                }
            }
            var keys: KeyChain.KeySet?
            var decision = Decision()
            var checkpoint: CountersignWire.Checkpoint?
            await check("keys") {
                let listed: ListKeysResponse = try await connection.call(Method.auditListKeys, ListKeysRequest())
                let set = try KeyChain.verify(firstKeySPKI: first, listed: listed)
                keys = set
                return "\(set.keys.count) key(s) from the first key \(KeyID.of(spkiDER: first).prefix(16))…, \(set.transitions) transition(s) verified"
            }
            await check("decision") {
                decision = try await connection.decision(requestID: requestID)
                guard decision.payloadType == PayloadType.decision else { throw AuditFailure("payload type \(decision.payloadType)") }
                try keys!.verify(SignedStatement(payloadType: decision.payloadType, payload: decision.statement,
                                                 signature: decision.signature, keyID: decision.keyID))
                return "\(decision.verdict), signed by key \(decision.keyID.prefix(16))…, ledger index \(decision.ledgerIndex)"
            }
            await check("statement") {
                let s = try DecisionStatement(protobuf: decision.statement)
                guard s.requestID == requestID else { throw AuditFailure("it is for request \(s.requestID)") }
                guard s.verdict == decision.verdict, s.keyID == decision.keyID else { throw AuditFailure("the reply's verdict or key differs from the signed statement's") }
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
            await check("checkpoint") {
                var cp = try await connection.checkpoint()
                let end = ContinuousClock.now + .seconds(10)
                while cp.treeSize <= decision.ledgerIndex, ContinuousClock.now < end {  // signed at most a second after an entry
                    try await Task.sleep(for: .milliseconds(200))
                    cp = try await connection.checkpoint()
                }
                guard cp.treeSize > decision.ledgerIndex else { throw AuditFailure("no checkpoint covers index \(decision.ledgerIndex) yet") }
                try keys!.verify(SignedStatement(payloadType: PayloadType.checkpoint, payload: cp.checkpoint, signature: cp.signature, keyID: cp.keyID))
                let parsed = try CountersignVerify.Checkpoint(parsing: cp.checkpoint)
                guard parsed.treeSize == cp.treeSize, parsed.rootHash == cp.rootHash else { throw AuditFailure("the reply's size or root differs from the signed text") }
                checkpoint = cp
                return "\(parsed.origin), tree size \(parsed.treeSize), root \(Hex.encode(parsed.rootHash).prefix(16))…, signed by key \(cp.keyID.prefix(16))…"
            }
            await check("inclusion") {
                let cp = checkpoint!
                let proof = try await connection.proveInclusion(leafIndex: decision.ledgerIndex, treeSize: cp.treeSize)
                try Merkle.verifyInclusion(leafHash: Merkle.leafHash(bytes: decision.statement), index: decision.ledgerIndex,
                                           treeSize: cp.treeSize, proof: proof.hashes, root: cp.rootHash)
                return "index \(decision.ledgerIndex) is in the tree of size \(cp.treeSize) (\(proof.hashes.count) hashes)"
            }
            await connection.close()
            if let keepCheckpoint, !failed, let cp = checkpoint {
                let stored = StoredCheckpoint(body: cp.checkpoint, treeSize: cp.treeSize, rootHash: cp.rootHash, payloadType: PayloadType.checkpoint,
                                              signature: cp.signature, keyID: cp.keyID, epoch: 0)
                do {
                    try Data(stored.printed.utf8).write(to: URL(fileURLWithPath: keepCheckpoint))
                    print("kept    the checkpoint in \(keepCheckpoint)")
                } catch {
                    throw ValidationError("cannot write \(keepCheckpoint): \(error)")
                }
            }
            if failed { throw ExitCode.failure }
        }
    }
}

/// A check of `countersign audit` that did not hold.
struct AuditFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
