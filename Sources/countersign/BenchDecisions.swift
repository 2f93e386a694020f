import ArgumentParser
import CountersignClient
import CountersignConfig
import CountersignVerify
import CountersignWire
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Crypto
import Histogram

/// `countersign bench decisions`: VerifyPlan load against a running node.
struct BenchDecisions: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decisions",
        abstract: "Signed, ledgered decisions per second and their latency, against a running node.",
        discussion: """
            Opens --connections orchestrator connections over mutual TLS to the configured node and \
            sends VerifyPlan with a realistic Terraform plan (a new request id each time, so every call \
            is evaluated, signed in the token and committed to the ledger), either as fast as the node \
            answers (closed loop, --in-flight calls per connection) or at a fixed --rate (open loop, \
            latency measured from each call's scheduled start). Prints decisions per second, latency \
            p50/p99/p99.9 (HdrHistogram) and, from the node's /metrics, the mean time spent in policy, \
            signing and appending. `make bench` starts the dev node and runs the standard set.
            """)

    @OptionGroup var client: ClientOptions

    @Option(help: "Connections.")
    var connections: Int = 64

    @Option(help: "Calls outstanding per connection (closed loop).")
    var inFlight: Int = 1

    @Option(help: "Decisions per second to offer (open loop); 0 means as fast as possible.")
    var rate: Int = 0

    @Option(help: "Seconds of measurement.")
    var seconds: Double = 10

    @Option(help: "The plan to submit (terraform-json). Default: a generated 20-resource plan that is APPROVED.")
    var plan: String?

    @Option(help: "Node metrics address host:port (default: node.metrics_listen of the configuration).")
    var metrics: String?

    @Flag(help: "Print each second's decisions and slowest reply while the benchmark runs.")
    var progress = false

    @Option(help: "Append one line per decision received to this file: request id, ledger index, verdict, SHA-256 of the statement (for fault tests).")
    var record: String?

    func run() async throws {
        let configuration = try client.clientConfiguration(defaultIdentity: "orchestrator")
        let server = try CountersignConfiguration.load(path: try client.config.resolvedPath())
        let owner = server.principals.first { $0.role == .orchestrator }?.owners.first { $0 != "*" } ?? "bench@example"
        let planBytes = try plan.map { p -> [UInt8] in
            guard let d = FileManager.default.contents(atPath: p) else { throw ValidationError("cannot read \(p)") }
            return Array(d)
        } ?? Self.generatedPlan(resources: 20)
        var clients: [CountersignClient] = []
        for _ in 0..<connections { clients.append(try await CountersignClient.connect(configuration)) }
        let metricsAddress = metrics ?? server.node.metricsListen?.description
        let before = await Self.scrape(metricsAddress)

        let runID = UUID().uuidString.prefix(8).lowercased()
        let counter = Counter()
        let recorder = try record.map { try Recorder(path: $0) }
        let perSecond = PerSecond()
        let start = ContinuousClock.now
        let printer = progress ? Task {
            var second = 1
            while !Task.isCancelled {
                try? await Task.sleep(until: start + .seconds(second) + .milliseconds(100), clock: .continuous)
                guard !Task.isCancelled else { break }
                let (count, maxUs) = perSecond.take(second - 1)
                print(String(format: "  second %3d: %6d decisions, slowest %.2f ms", second, count, Double(maxUs) / 1000))
                second += 1
            }
        } : nil
        let end = start + .milliseconds(Int(seconds * 1000))
        let interval: Duration? = rate > 0 ? .nanoseconds(Int64(1_000_000_000 * Double(connections) / Double(rate))) : nil
        let perTask = interval == nil ? inFlight : 1
        let results = try await withThrowingTaskGroup(of: (Histogram<UInt64>, Int).self) { group in
            for (c, client) in clients.enumerated() {
                for t in 0..<perTask {
                    group.addTask {
                        var histogram = Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
                        var errors = 0
                        var next = start + (interval.map { $0 * Double(c) / Double(connections) } ?? .zero)
                        var n = 0
                        while true {
                            let scheduled = interval == nil ? ContinuousClock.now : next
                            if scheduled >= end { break }
                            if interval != nil, ContinuousClock.now < scheduled { try await Task.sleep(until: scheduled) }
                            var request = VerifyPlanRequest()
                            request.requestID = "bench-\(runID)-\(c)-\(t)-\(n)"
                            request.userRequest = Self.userRequest
                            request.owner = owner
                            request.plan = planBytes
                            request.planFormat = "terraform-json"
                            n += 1
                            do {
                                let decision = try await client.verifyPlan(request)
                                recorder?.write(decision)
                                let now = ContinuousClock.now
                                let us = (now - scheduled).microseconds
                                _ = histogram.record(UInt64(max(1, us)))
                                perSecond.record(second: Int((now - start).microseconds / 1_000_000), microseconds: us)
                            } catch {
                                errors += 1
                            }
                            if let interval { next = next + interval }
                        }
                        counter.add(n)
                        return (histogram, errors)
                    }
                }
            }
            var merged = Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
            var errors = 0
            for try await (h, e) in group {
                merged.add(h)
                errors += e
            }
            return (merged, errors)
        }
        let elapsed = (ContinuousClock.now - start).seconds
        printer?.cancel()
        let after = await Self.scrape(metricsAddress)
        for c in clients { await c.close() }
        let (histogram, errors) = results
        let done = Double(histogram.totalCount)
        print(String(format: "decisions: %d connections, %@: %.0f decisions/s (%d signed and ledgered, %d errors, %.1f s)",
                     connections, rate > 0 ? "offered \(rate)/s" : "\(inFlight) in flight each" as NSString,
                     done / elapsed, Int(done), errors, elapsed))
        print(String(format: "  latency: p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms",
                     Double(histogram.valueAtPercentile(50)) / 1000, Double(histogram.valueAtPercentile(99)) / 1000,
                     Double(histogram.valueAtPercentile(99.9)) / 1000, Double(histogram.max) / 1000))
        if let before, let after {
            var parts: [String] = []
            for stage in ["policy", "sign", "append", "decision"] {
                let sum = (after["countersign_\(stage)_duration_seconds_sum"] ?? 0) - (before["countersign_\(stage)_duration_seconds_sum"] ?? 0)
                let count = (after["countersign_\(stage)_duration_seconds_count"] ?? 0) - (before["countersign_\(stage)_duration_seconds_count"] ?? 0)
                if count > 0 { parts.append(String(format: "%@ %.2f ms", stage, sum / count * 1000)) }
            }
            print("  server time per decision (mean): " + parts.joined(separator: ", "))
            let delta = { (name: String) in (after[name] ?? 0) - (before[name] ?? 0) }
            let batches = delta("countersign_ledger_commit_duration_seconds_count")
            if batches > 0 {
                print(String(format: "  ledger: %.0f batches, %.1f entries each, %.2f ms per batch commit (mean)", batches,
                             delta("countersign_ledger_batch_entries_sum") / batches,
                             delta("countersign_ledger_commit_duration_seconds_sum") / batches * 1000))
            }
        }
    }

    /// The sums and counts of the node's duration histograms, from /metrics.
    static func scrape(_ address: String?) async -> [String: Double]? {
        guard let address, let url = URL(string: "http://\(address)/metrics"),
              let (data, _) = try? await URLSession.shared.data(from: url), let text = String(data: data, encoding: .utf8) else { return nil }
        var values: [String: Double] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("countersign_") && (line.contains("_sum") || line.contains("_count")) {
            let parts = line.split(separator: " ")
            guard parts.count == 2, let v = Double(parts[1]) else { continue }
            let name = String(parts[0].split(separator: "{")[0])
            values[name, default: 0] += v
        }
        return values
    }

    /// The person's words sent with every decision (they match `generatedPlan(resources: 20)`).
    static let userRequest = "Create the application tier: twenty tagged, encrypted resources"

    /// A Terraform plan creating `resources` tagged, encrypted resources in a dev environment.
    static func generatedPlan(resources: Int) -> [UInt8] {
        var changes: [String] = []
        for i in 0..<resources {
            changes.append("""
                {"address":"aws_ebs_volume.app_\(i)","mode":"managed","type":"aws_ebs_volume","name":"app_\(i)",\
                "provider_name":"registry.terraform.io/hashicorp/aws","change":{"actions":["create"],"before":null,\
                "after":{"availability_zone":"eu-west-1a","encrypted":true,"size":20,"type":"gp3",\
                "tags":{"Name":"app-\(i)","Environment":"dev","Owner":"team-app","CostCenter":"cc-42"}},\
                "after_unknown":{"id":true,"arn":true},"before_sensitive":false,"after_sensitive":{}}}
                """)
        }
        return Array("""
            {"format_version":"1.2","terraform_version":"1.9.8","resource_changes":[\(changes.joined(separator: ","))],\
            "configuration":{"provider_config":{"aws":{"name":"aws","expressions":{"region":{"constant_value":"eu-west-1"}}}}}}
            """.utf8)
    }

    /// Lines of `request_id<TAB>ledger_index<TAB>verdict<TAB>sha256(statement)`, written as replies arrive.
    final class Recorder: @unchecked Sendable {
        private let lock = NSLock()
        private let handle: FileHandle
        init(path: String) throws {
            if !FileManager.default.fileExists(atPath: path) { FileManager.default.createFile(atPath: path, contents: nil) }
            guard let h = FileHandle(forWritingAtPath: path) else { throw ValidationError("cannot write \(path)") }
            h.seekToEndOfFile()
            handle = h
        }
        func write(_ d: Decision) {
            let digest = Hex.encode(Array(SHA256.hash(data: d.statement)))
            let line = "\(d.requestID)\t\(d.ledgerIndex)\t\(d.verdict)\t\(digest)\n"
            lock.lock(); handle.write(Data(line.utf8)); lock.unlock()
        }
    }

    /// Decisions and the slowest reply of each second since the start, for --progress.
    final class PerSecond: @unchecked Sendable {
        private let lock = NSLock()
        private var buckets: [Int: (count: Int, maxUs: Int64)] = [:]
        func record(second: Int, microseconds: Int64) {
            lock.lock()
            let b = buckets[second] ?? (0, 0)
            buckets[second] = (b.count + 1, max(b.maxUs, microseconds))
            lock.unlock()
        }
        func take(_ second: Int) -> (Int, Int64) {
            lock.lock()
            defer { lock.unlock() }
            return buckets.removeValue(forKey: second) ?? (0, 0)
        }
    }

    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var value = 0
        func add(_ n: Int) { lock.lock(); value += n; lock.unlock() }
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    var microseconds: Int64 { components.seconds * 1_000_000 + components.attoseconds / 1_000_000_000_000 }
}
