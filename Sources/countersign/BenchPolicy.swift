import ArgumentParser
import CountersignPolicy
import Foundation

/// `countersign plan bench` (hidden): in-process timing of the policy engine, used by
/// scripts/bench-policy.
struct PlanBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Time the policy engine in-process (used by scripts/bench-policy).",
        discussion: """
            countersign plan bench [--decision-plan] [--plan FILE]... [--iterations N]
                prints, per plan, the time of one whole evaluation (parse + rules + summary):
                median and p99 over N runs, and the process's peak resident memory.
                --decision-plan times the 20-resource plan and the request that
                `countersign bench decisions` submits to a node.
            countersign plan bench --generate N --out FILE
                writes a synthetic `terraform show -json` plan with N resource changes.
            """,
        shouldDisplay: false
    )

    @Option(name: .long, help: "Plan files (terraform-json) to time.")
    var plan: [String] = []

    @Flag(name: .long, help: "Time the plan and request `countersign bench decisions` submits (20 resources).")
    var decisionPlan = false

    @Option(name: .long, help: "Evaluations per plan.")
    var iterations: Int = 200

    @Option(name: .long, help: "Write a generated plan with this many resource changes.")
    var generate: Int?

    @Option(name: .long, help: "Where to write the generated plan.")
    var out: String?

    func run() throws {
        if let n = generate {
            guard let out else { throw ValidationError("--generate needs --out FILE") }
            try Data(PlanBench.generatedPlan(resources: n).utf8).write(to: URL(fileURLWithPath: out))
            print("wrote \(out) (\(n) resource changes)")
            return
        }
        let engine = PolicyEngine()
        if decisionPlan {
            try time(engine, label: "bench decisions plan", plan: BenchDecisions.generatedPlan(resources: 20),
                     userRequest: BenchDecisions.userRequest)
        }
        for file in plan {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw ValidationError("cannot read \(file)")
            }
            try time(engine, label: (file as NSString).lastPathComponent, plan: Array(data),
                     userRequest: "Deploy the web stack for the analytics team")
        }
        print("peak resident memory: \(PlanBench.peakRSS())")
    }

    /// Times `iterations` evaluations of one plan and prints median and p99 of wall and CPU time.
    /// Each timed evaluation includes making its request, which hashes the plan.
    func time(_ engine: PolicyEngine, label: String, plan: [UInt8], userRequest: String) throws {
        func request() -> EvaluationRequest {
            EvaluationRequest(requestID: "bench", userRequest: userRequest, owner: "bench", plan: plan, planFormat: .terraformJSON)
        }
        var findings = 0
        for _ in 0..<3 { findings = try engine.evaluate(request()).findings.count }
        var times: [Double] = []
        var cpu: [Double] = []
        times.reserveCapacity(iterations)
        let clock = ContinuousClock()
        for _ in 0..<max(1, iterations) {
            let cpuStart = PlanBench.threadCPUms()
            let start = clock.now
            let d = try engine.evaluate(request())
            let elapsed = clock.now - start
            cpu.append(PlanBench.threadCPUms() - cpuStart)
            precondition(d.findings.count == findings)
            times.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
        }
        times.sort()
        cpu.sort()
        func p99(_ xs: [Double]) -> Double { xs[min(xs.count - 1, Int((Double(xs.count) * 0.99).rounded(.up)) - 1)] }
        print(String(format: "%@: %d bytes, %d findings, %d runs: wall median %.3f ms, p99 %.3f ms; CPU median %.3f ms, p99 %.3f ms",
                     label, plan.count, findings, times.count,
                     times[times.count / 2], p99(times), cpu[cpu.count / 2], p99(cpu)))
    }

    /// This thread's CPU time in milliseconds (unaffected by other processes on a busy machine).
    static func threadCPUms() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) * 1000 + Double(ts.tv_nsec) / 1e6
    }

    static func peakRSS() -> String {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return "unknown" }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
            return String(format: "%.1f MiB", Double(kb) / 1024)
        }
        return "unknown"
    }

    /// A realistic synthetic plan: instances, security groups, volumes, buckets, databases, in
    /// modules and not, with unknown values and tags.
    static func generatedPlan(resources n: Int) -> String {
        var parts: [String] = []
        parts.reserveCapacity(n)
        let tags = #"{"Owner":"team-\#(0)","Environment":"staging","CostCenter":"cc-1"}"#
        for i in 0..<n {
            let module = i % 4 == 0 ? "module.m\(i % 50)." : ""
            let moduleAddress = i % 4 == 0 ? #","module_address":"module.m\#(i % 50)""# : ""
            let (type, after, unknown): (String, String, String)
            switch i % 5 {
            case 0:
                type = "aws_instance"
                after = #"{"ami":"ami-0abc\#(i)","instance_type":"t3.micro","tags":\#(tags),"root_block_device":[{"encrypted":true,"volume_size":20}],"vpc_security_group_ids":["sg-0123456\#(i)"],"user_data":null}"#
                unknown = #"{"id":true,"arn":true,"private_ip":true,"public_ip":true}"#
            case 1:
                type = "aws_security_group"
                after = #"{"name":"sg-\#(i)","description":"app","ingress":[{"cidr_blocks":["10.0.0.0/8"],"from_port":443,"to_port":443,"protocol":"tcp","ipv6_cidr_blocks":[],"self":false}],"egress":[{"cidr_blocks":["0.0.0.0/0"],"from_port":0,"to_port":0,"protocol":"-1"}],"tags":\#(tags)}"#
                unknown = #"{"id":true,"arn":true,"vpc_id":true}"#
            case 2:
                type = "aws_ebs_volume"
                after = #"{"availability_zone":"us-west-2a","size":\#(10 + i % 100),"encrypted":true,"type":"gp3","tags":\#(tags)}"#
                unknown = #"{"id":true,"arn":true,"kms_key_id":true}"#
            case 3:
                type = "aws_s3_bucket"
                after = #"{"bucket":"bucket-\#(i)","acl":"private","force_destroy":false,"server_side_encryption_configuration":[{"rule":[{"apply_server_side_encryption_by_default":[{"sse_algorithm":"aws:kms"}]}]}],"versioning":[{"enabled":true}],"tags":\#(tags)}"#
                unknown = #"{"id":true,"arn":true,"region":true}"#
            default:
                type = "aws_db_instance"
                after = #"{"identifier":"db-\#(i)","engine":"postgres","instance_class":"db.t3.micro","allocated_storage":20,"publicly_accessible":false,"storage_encrypted":true,"password":"x","tags":\#(tags)}"#
                unknown = #"{"id":true,"arn":true,"endpoint":true}"#
            }
            let name = "r\(i)"
            parts.append(#"{"address":"\#(module)\#(type).\#(name)"\#(moduleAddress),"mode":"managed","type":"\#(type)","name":"\#(name)","provider_name":"registry.terraform.io/hashicorp/aws","change":{"actions":["create"],"before":null,"after":\#(after),"after_unknown":\#(unknown),"before_sensitive":false,"after_sensitive":{"password":true}}}"#)
        }
        return #"{"format_version":"1.2","terraform_version":"1.9.8","resource_changes":["# + parts.joined(separator: ",\n")
            + #"],"configuration":{"provider_config":{"aws":{"name":"aws","expressions":{"region":{"constant_value":"us-west-2"}}}}}}"#
    }
}
