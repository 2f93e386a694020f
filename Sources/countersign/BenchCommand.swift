import ArgumentParser

/// `countersign bench …`: benchmarks that print figures (not tests).
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure Countersign on this machine and print the figures.",
        discussion: "Build with -c release first (make bench-… does). Each benchmark says what it measures and how.",
        subcommands: [BenchWire.self, BenchSign.self, BenchDecisions.self])
}
