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
import NIOCore

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
            signing and appending. A call that fails (UNAVAILABLE, a deadline) counts as an error and \
            the connection goes on; a connection that closes (the node stopped) sends nothing more, and \
            the summary says how many were lost. `make bench` starts the dev node and runs the standard \
            set.
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
        // Each call slot is a loop on its connection's event loop: a reply is recorded and the next
        // call sent from there, so the load generator never hops threads per call (it shares the
        // cores with the node, and its CPU is the node's loss).
        var runs: [EventLoopFuture<CallSlot.Outcome>] = []
        for (c, client) in clients.enumerated() {
            for t in 0..<perTask {
                let first = start + (interval.map { $0 * Double(c) / Double(connections) } ?? .zero)
                var template = VerifyPlanRequest()
                template.userRequest = Self.userRequest
                template.owner = owner
                template.plan = planBytes
                template.planFormat = "terraform-json"
                let slot = CallSlot(client: client, template: template, idPrefix: "bench-\(runID)-\(c)-\(t)-",
                                    start: start, end: end, first: first, interval: interval, recorder: recorder, perSecond: perSecond)
                runs.append(client.eventLoop.flatSubmit { slot.run() })
            }
        }
        var histogram = Histogram<UInt64>(highestTrackableValue: CallSlot.highestMicroseconds, numberOfSignificantValueDigits: .three)
        var errors = 0
        for run in runs {
            let outcome = try await run.get()
            histogram.add(outcome.histogram)
            errors += outcome.errors
        }
        let elapsed = (ContinuousClock.now - start).seconds
        printer?.cancel()
        let after = await Self.scrape(metricsAddress)
        let lost = clients.filter { !$0.isActive }.count
        for c in clients { await c.close() }
        let done = Double(histogram.totalCount)
        print(String(format: "decisions: %d connections, %@: %.0f decisions/s (%d signed and ledgered, %d errors%@, %.1f s)",
                     connections, rate > 0 ? "offered \(rate)/s" : "\(inFlight) in flight each" as NSString,
                     done / elapsed, Int(done), errors, lost > 0 ? ", \(lost) connections lost" as NSString : "" as NSString, elapsed))
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
            if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
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

    /// One call slot of one connection, confined to the connection's event loop: sends a call, and
    /// from its reply's callback records the latency and sends the next, until the end of the run.
    /// Closed loop (no interval): the next call leaves at once. Open loop: each call leaves at its
    /// scheduled time, and its latency counts from then (so a slow reply delays the next without
    /// hiding the wait: coordinated omission is avoided).
    final class CallSlot: @unchecked Sendable {
        struct Outcome: Sendable {
            var histogram: Histogram<UInt64>
            var errors: Int
        }
        static let highestMicroseconds: UInt64 = 120_000_000

        private let client: CountersignClient
        private var request: VerifyPlanRequest
        private let idPrefix: String
        private let start: ContinuousClock.Instant
        private let end: ContinuousClock.Instant
        private let interval: Duration?
        private let recorder: Recorder?
        private let perSecond: PerSecond
        private var next: ContinuousClock.Instant
        private var sent = 0
        private var outcome = Outcome(histogram: Histogram<UInt64>(highestTrackableValue: highestMicroseconds, numberOfSignificantValueDigits: .three),
                                      errors: 0)
        private let done: EventLoopPromise<Outcome>

        init(client: CountersignClient, template: VerifyPlanRequest, idPrefix: String, start: ContinuousClock.Instant,
             end: ContinuousClock.Instant, first: ContinuousClock.Instant, interval: Duration?, recorder: Recorder?, perSecond: PerSecond) {
            self.client = client
            self.request = template
            self.idPrefix = idPrefix
            self.start = start
            self.end = end
            self.next = first
            self.interval = interval
            self.recorder = recorder
            self.perSecond = perSecond
            self.done = client.eventLoop.makePromise()
        }

        /// Starts the loop (on the event loop); the future completes when the run ends.
        func run() -> EventLoopFuture<Outcome> {
            step()
            return done.futureResult
        }

        private func step() {
            let now = ContinuousClock.now
            let scheduled = interval == nil ? now : next
            guard scheduled < end else {
                done.succeed(outcome)
                return
            }
            if now < scheduled {
                client.eventLoop.scheduleTask(in: .nanoseconds((scheduled - now).nanoseconds)) { self.send(scheduled) }
            } else {
                send(scheduled)
            }
        }

        private func send(_ scheduled: ContinuousClock.Instant) {
            request.requestID = idPrefix + String(sent)
            sent += 1
            client.send(Method.verifyPlan, request, as: Decision.self).whenComplete { result in
                switch result {
                case .success(let decision):
                    self.recorder?.write(decision)
                    let now = ContinuousClock.now
                    let us = (now - scheduled).microseconds
                    _ = self.outcome.histogram.record(UInt64(max(1, us)))
                    self.perSecond.record(second: Int((now - self.start).microseconds / 1_000_000), microseconds: us)
                case .failure:
                    self.outcome.errors += 1
                    // The connection is gone (the node stopped or was killed): this slot ends here
                    // rather than fail call after call on it until the end of the run.
                    guard self.client.isActive else {
                        self.done.succeed(self.outcome)
                        return
                    }
                }
                if let interval = self.interval { self.next = self.next + interval }
                // Through the loop's queue, not straight from here: a call on a closed connection
                // fails at once, inside `send`, and calling step() here would recurse call after
                // call until the stack ran out.
                self.client.eventLoop.execute { self.step() }
            }
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
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    var microseconds: Int64 { components.seconds * 1_000_000 + components.attoseconds / 1_000_000_000_000 }
    var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
}
