import ArgumentParser
import Foundation

/// `countersign bench …`: benchmarks that print figures (not tests).
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure Countersign on this machine and print the figures.",
        discussion: "Build with -c release first (make bench-… does). Each benchmark says what it measures and how.",
        subcommands: [BenchWire.self, BenchSign.self, BenchDecisions.self])
}

/// A count that a benchmark's concurrent tasks add to.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var v = 0
    func add(_ n: Int) { lock.lock(); v += n; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return v }
}
