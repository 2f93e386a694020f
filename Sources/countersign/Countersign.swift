import ArgumentParser
import Foundation

@main
struct Countersign: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "countersign",
        abstract: "Countersign: checks infrastructure plans against the person's request and policy, and signs the answer.",
        discussion: """
            Every subcommand finds its configuration by --config, else $COUNTERSIGN_CONFIG, else the \
            dev instance's .local/countersign.yaml in this checkout (made by `make demo` or Deploy/dev/up).
            """,
        version: CountersignVersion.string,
        subcommands: [Serve.self, Health.self, PlanCommand.self, LedgerCommand.self, Keys.self, AuditCommand.self, Demo.self, Bench.self]
    )
}

enum CountersignVersion {
    static let string = "0.1.0"
}

/// The `--config` option every subcommand that needs a configuration shares.
struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Configuration file (YAML).",
        discussion: "Default: $COUNTERSIGN_CONFIG, else .local/countersign.yaml in this checkout or a parent folder."
    ))
    var config: String?

    /// The configuration file to use, by the order above.
    /// - Throws: a `ValidationError` that says where it looked.
    func resolvedPath() throws -> String {
        if let config { return config }
        if let env = ProcessInfo.processInfo.environment["COUNTERSIGN_CONFIG"], !env.isEmpty { return env }
        var dir = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        while true {
            let candidate = dir.appendingPathComponent(".local/countersign.yaml").path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            let parent = dir.deletingLastPathComponent()
            if parent.path == dir.path { break }
            dir = parent
        }
        throw ValidationError(
            "no configuration: pass --config FILE, set COUNTERSIGN_CONFIG, or run `make dev-up` to make .local/countersign.yaml")
    }
}
