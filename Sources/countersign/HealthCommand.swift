import ArgumentParser
import CountersignClient
import CountersignWire

struct Health: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ask a Countersign node how it is, over mutual TLS.",
        discussion: "Exits 0 when the node answers, 1 otherwise. Uses the auditor's certificate unless --identity says otherwise.")

    @OptionGroup var client: ClientOptions

    @Flag(name: .long, help: "Print the reply as JSON.")
    var json = false

    func run() async throws {
        let configuration = try client.clientConfiguration(defaultIdentity: "auditor")
        let connection: CountersignClient
        do {
            connection = try await CountersignClient.connect(configuration)
        } catch {
            print("countersign health: \(error)")
            throw ExitCode.failure
        }
        do {
            let h = try await connection.health()
            if json {
                print("""
                    {"node":"\(h.node)","role":"\(h.role)","version":"\(h.version)","active_address":"\(h.activeAddress)",\
                    "epoch":\(h.epoch),"signer_available":\(h.signerAvailable),"ledger_available":\(h.ledgerAvailable),\
                    "tree_size":\(h.treeSize),"principal":"\(h.principal)"}
                    """)
            } else {
                print("\(h.node) at \(configuration.host):\(configuration.port): \(h.role), version \(h.version)")
                print("  you are:  \(h.principal)")
                print("  signer:   \(h.signerAvailable ? "available" : "UNAVAILABLE")")
                print("  ledger:   \(h.ledgerAvailable ? "available" : "UNAVAILABLE") (tree size \(h.treeSize), epoch \(h.epoch))")
            }
            await connection.close()
        } catch {
            await connection.close()
            print("countersign health: \(error)")
            throw ExitCode.failure
        }
    }
}
