import Foundation
import Testing
@testable import CountersignServer

/// One request id at a time, different ids at once, and nobody left waiting.
@Suite struct RequestGateTests {
    final class Tally: @unchecked Sendable {
        private let lock = NSLock()
        private var inside: [String: Int] = [:]
        private(set) var overlapsOfOneID = 0
        private(set) var mostInsideAtOnce = 0
        func enter(_ id: String) {
            lock.lock()
            inside[id, default: 0] += 1
            if inside[id]! > 1 { overlapsOfOneID += 1 }
            mostInsideAtOnce = max(mostInsideAtOnce, inside.values.reduce(0, +))
            lock.unlock()
        }
        func leave(_ id: String) {
            lock.lock()
            inside[id]! -= 1
            lock.unlock()
        }
    }

    @Test func oneRequestIDAtATimeAndDifferentIDsTogether() async throws {
        let gate = RequestGate()
        let tally = Tally()
        let ids = ["a", "b", "c", "d"]
        let done = try await withThrowingTaskGroup(of: Int.self) { group in
            for n in 0..<400 {
                let id = ids[n % ids.count]
                group.addTask {
                    try await gate.exclusive(id) {
                        tally.enter(id)
                        try await Task.sleep(nanoseconds: UInt64.random(in: 0...200_000))
                        tally.leave(id)
                        return 1
                    }
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(done == 400, "every caller got its turn")
        #expect(tally.overlapsOfOneID == 0)
        #expect(tally.mostInsideAtOnce > 1, "different ids ran at the same time")
        // A failing body releases the id too.
        await #expect(throws: CancellationError.self) { try await gate.exclusive("a") { throw CancellationError() } }
        #expect(try await gate.exclusive("a") { 7 } == 7)
    }
}
