import ArgumentParser
import CountersignClient
import enum CountersignPolicy.JSONText
import CountersignWire
import Foundation

struct Health: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ask a Countersign node how it is, over mutual TLS.",
        discussion: """
            Exits 0 when the node answers, 1 otherwise; with --ready, 0 only when it can decide (its policy is \
            valid, its signer has an active key, it holds the ledger lease). With --wait it asks again until \
            then, for at most that many seconds (for scripts that start a node). Uses the auditor's \
            certificate unless --identity says otherwise.
            """)

    @OptionGroup var client: ClientOptions

    @Flag(name: .long, help: "Print the reply as JSON.")
    var json = false

    @Flag(help: "Exit 0 only when the node can decide (policy, signer and ledger available).")
    var ready = false

    @Option(help: "With --ready: keep asking for at most this many seconds.")
    var wait: Double = 0

    func run() async throws {
        let deadline = ContinuousClock.now + .milliseconds(Int(wait * 1000))
        while true {
            do {
                try await ask()
                return
            } catch let error as ExitCode where error != .validationFailure {
                guard ContinuousClock.now < deadline else { throw error }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    func ask() async throws {
        let configuration = try client.clientConfiguration(defaultIdentity: "auditor")
        let connection: CountersignClient
        do {
            connection = try await CountersignClient.connect(configuration)
        } catch {
            if wait == 0 { FileHandle.standardError.write(Data("countersign health: \(error)\n".utf8)) }
            throw ExitCode.failure
        }
        do {
            let h = try await connection.health()
            if json {
                // The strings come from the server: quoted, so that none of them can end the JSON early.
                let q = JSONText.quoted
                print("""
                    {"node":\(q(h.node)),"role":\(q(h.role)),"version":\(q(h.version)),"active_address":\(q(h.activeAddress)),\
                    "epoch":\(h.epoch),"signer_available":\(h.signerAvailable),"ledger_available":\(h.ledgerAvailable),\
                    "tree_size":\(h.treeSize),"principal":\(q(h.principal)),"policy_available":\(h.policyAvailable),\
                    "policy_sha256":\(q(h.policySHA256))}
                    """)
            } else {
                print("\(h.node) at \(configuration.host):\(configuration.port): \(h.role), version \(h.version)")
                print("  you are:  \(h.principal)")
                print("  signer:   \(h.signerAvailable ? "available" : "UNAVAILABLE")")
                print("  ledger:   \(h.ledgerAvailable ? "available" : "UNAVAILABLE") (tree size \(h.treeSize), epoch \(h.epoch))")
                print("  policy:   \(h.policyAvailable ? "valid, sha256 \(h.policySHA256)" : "INVALID: every decision is UNAVAILABLE")")
            }
            await connection.close()
            if ready, !(h.signerAvailable && h.ledgerAvailable && h.policyAvailable) { throw ExitCode.failure }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            await connection.close()
            FileHandle.standardError.write(Data("countersign health: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}
