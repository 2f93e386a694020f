import Testing
@testable import CountersignPolicy

@Suite("Execution reports against the approved plan") struct ExecutionTests {
    let planned = [PlannedChange(address: "aws_vpc.a", action: "create"),
                   PlannedChange(address: "aws_db_instance.b", action: "replace"),
                   PlannedChange(address: "aws_s3_bucket.c", action: "delete")]

    static func applyLog(_ lines: [(type: String, address: String, action: String)]) -> [UInt8] {
        var out = #"{"@level":"info","@message":"Terraform 1.9.8","type":"version","terraform":"1.9.8"}"# + "\n"
        for l in lines {
            out += #"{"@level":"info","type":"\#(l.type)","hook":{"resource":{"addr":"\#(l.address)","resource_type":"x"},"action":"\#(l.action)","elapsed_seconds":1}}"# + "\n"
        }
        out += #"{"type":"change_summary","changes":{"add":1}}"# + "\n"
        return Array(out.utf8)
    }

    @Test func terraformApplyLogThatMatches() throws {
        let log = Self.applyLog([("apply_complete", "aws_vpc.a", "create"), ("apply_complete", "aws_db_instance.b", "delete"),
                                 ("apply_complete", "aws_db_instance.b", "create"), ("apply_complete", "aws_s3_bucket.c", "delete")])
        let executed = try ExecutionCheck.parse(log, format: .terraformApplyJSON)
        #expect(executed.count == 4)
        #expect(ExecutionCheck.compare(planned: planned, executed: executed).isEmpty)
    }

    @Test func everyKindOfDeviationIsNamed() throws {
        let log = Self.applyLog([("apply_complete", "aws_vpc.a", "update"),            // different action
                                 ("apply_errored", "aws_db_instance.b", "replace"),     // failed
                                 ("apply_complete", "aws_iam_role.extra", "create")])   // not in the plan
        // aws_s3_bucket.c: planned delete that did not happen.
        let deviations = ExecutionCheck.compare(planned: planned, executed: try ExecutionCheck.parse(log, format: .terraformApplyJSON))
        #expect(Set(deviations.map(\.address)) == ["aws_vpc.a", "aws_db_instance.b", "aws_s3_bucket.c", "aws_iam_role.extra"])
        #expect(deviations.first { $0.address == "aws_iam_role.extra" }?.expected == "")
        #expect(deviations.first { $0.address == "aws_s3_bucket.c" }?.actual == "")
    }

    @Test func changesListFormat() throws {
        let report = Array(#"[{"address":"aws_vpc.a","action":"create"},{"address":"aws_db_instance.b","action":"replace"},{"address":"aws_s3_bucket.c","action":"delete"}]"#.utf8)
        #expect(ExecutionCheck.compare(planned: planned, executed: try ExecutionCheck.parse(report, format: .changesJSON)).isEmpty)
        let missing = Array(#"[{"address":"aws_vpc.a","action":"create"}]"#.utf8)
        #expect(ExecutionCheck.compare(planned: planned, executed: try ExecutionCheck.parse(missing, format: .changesJSON)).count == 2)
    }

    @Test(arguments: ["", "{", "[1]", #"[{"address":1,"action":"create"}]"#, "{\"type\":1}", "[" + String(repeating: "[", count: 5000)])
    func malformedReportsAreErrors(_ text: String) {
        #expect(throws: PolicyError.self) { try ExecutionCheck.parse(Array(text.utf8), format: .changesJSON) }
    }

    @Test func malformedApplyLogLine() {
        #expect(throws: PolicyError.self) {
            try ExecutionCheck.parse(Array(#"{"type":"apply_complete","hook":{}}"#.utf8), format: .terraformApplyJSON)
        }
        #expect(throws: PolicyError.self) { try ExecutionCheck.parse([0xff, 0xfe], format: .terraformApplyJSON) }
        #expect(throws: PolicyError.self) { try ExecutionFormat(wireName: "yaml") }
    }

    @Test func plannedChangesComeFromThePlan() throws {
        let plan = Array(#"""
            {"format_version":"1.2","resource_changes":[
             {"address":"a.x","mode":"managed","type":"a","name":"x","change":{"actions":["create"],"before":null,"after":{}}},
             {"address":"a.y","mode":"managed","type":"a","name":"y","change":{"actions":["delete","create"],"before":{},"after":{}}},
             {"address":"a.z","mode":"managed","type":"a","name":"z","change":{"actions":["no-op"],"before":{},"after":{}}}]}
            """#.utf8)
        let decision = try PolicyEngine().evaluate(EvaluationRequest(requestID: "r", userRequest: "create x and replace y",
                                                                     owner: "o", plan: plan, planFormat: .terraformJSON))
        #expect(decision.plannedChanges == [PlannedChange(address: "a.x", action: "create"), PlannedChange(address: "a.y", action: "replace")])
    }
}
