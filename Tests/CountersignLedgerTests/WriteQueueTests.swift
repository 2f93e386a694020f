import Foundation
import Testing
@testable import CountersignLedger

/// The writer's commit delay (``WriteQueue/gatherExpected(cap:within:)``): it waits only while
/// announced appends are on their way, ends as soon as the last one arrives or is withdrawn, or
/// the cap is reached, and never waits past its window. No database: the queue alone, with the
/// writer's side on a thread of its own as in ``BatchWriter``. The tests act only once that thread
/// sleeps on the queue, so that a busy machine cannot reorder them.
@Suite(.timeLimit(.minutes(1))) struct WriteQueueTests {
    /// The writer's side: `gatherExpected` on a thread of its own.
    final class Gatherer: @unchecked Sendable {
        private let lock = NSLock()
        private var waited: Duration?

        init(_ queue: WriteQueue, cap: Int = 32, within window: Duration) {
            Thread { [self] in
                let start = ContinuousClock.now
                queue.gatherExpected(cap: cap, within: window)
                lock.lock()
                waited = ContinuousClock.now - start
                lock.unlock()
            }.start()
        }

        var hasReturned: Bool { waitedSoFar != nil }

        private var waitedSoFar: Duration? {
            lock.lock()
            defer { lock.unlock() }
            return waited
        }

        /// How long it waited, once it has returned (at most 10 s from now).
        func result() async -> Duration? {
            for _ in 0..<10_000 where !hasReturned { try? await Task.sleep(for: .milliseconds(1)) }
            return waitedSoFar
        }
    }

    /// Waits until the gatherer sleeps on the queue (or has returned).
    private func untilAsleep(_ queue: WriteQueue, _ g: Gatherer) async throws {
        while !queue.writerSleeps && !g.hasReturned { try await Task.sleep(for: .milliseconds(1)) }
    }

    /// Queues a caller (its entries empty), consuming `announcement`; it waits until ``release(_:)``.
    private func queueCaller(_ queue: WriteQueue, consuming announcement: ExpectedAppend?) async throws -> Task<Void, Never> {
        let before = queue.callers
        let task = Task {
            _ = try? await withCheckedThrowingContinuation { (c: CheckedContinuation<[UInt64], any Error>) in
                #expect(queue.push(WriteQueue.Pending(entries: [], continuation: c), consuming: announcement))
            }
        }
        while queue.callers == before { try await Task.sleep(for: .milliseconds(1)) }
        return task
    }

    private func release(_ queue: WriteQueue) {
        for p in queue.take(limit: 1_000) { p.continuation.resume(returning: []) }
    }

    @Test func withNothingAnnouncedItDoesNotWait() async throws {
        let queue = WriteQueue()
        let waited = try #require(await Gatherer(queue, within: .seconds(30)).result())
        #expect(waited < .seconds(5), "waited \(waited)")
    }

    @Test func itEndsWhenTheLastAnnouncedAppendArrives() async throws {
        let queue = WriteQueue()
        let first = queue.expect(), second = queue.expect()
        #expect(queue.expected == 2)
        let g = Gatherer(queue, within: .seconds(30))
        try await untilAsleep(queue, g)
        let a = try await queueCaller(queue, consuming: first)
        try await Task.sleep(for: .milliseconds(50))
        #expect(!g.hasReturned, "it stopped waiting with an announced append still on its way")
        let b = try await queueCaller(queue, consuming: second)
        let waited = try #require(await g.result())
        #expect(waited < .seconds(5), "waited \(waited)")
        #expect(queue.expected == 0)
        #expect(queue.callers == 2)
        release(queue)
        await a.value
        await b.value
    }

    @Test func aWithdrawnAnnouncementEndsTheWait() async throws {
        let queue = WriteQueue()
        let announcement = queue.expect()
        let g = Gatherer(queue, within: .seconds(30))
        try await untilAsleep(queue, g)
        #expect(!g.hasReturned)
        announcement.withdraw()
        announcement.withdraw()  // twice: counted once
        let waited = try #require(await g.result())
        #expect(waited < .seconds(5), "waited \(waited)")
        #expect(queue.expected == 0)
    }

    @Test func anAnnouncementThatNeverComesCostsOneWindow() async throws {
        let queue = WriteQueue()
        let announcement = queue.expect()
        let waited = try #require(await Gatherer(queue, within: .milliseconds(200)).result())
        #expect(waited >= .milliseconds(190) && waited < .seconds(5), "waited \(waited)")
        #expect(queue.expected == 1)
        announcement.withdraw()
        #expect(queue.expected == 0)
    }

    @Test func itEndsAtTheCap() async throws {
        let queue = WriteQueue()
        let announcement = queue.expect()
        let g = Gatherer(queue, cap: 2, within: .seconds(30))
        try await untilAsleep(queue, g)
        let a = try await queueCaller(queue, consuming: nil)
        try await Task.sleep(for: .milliseconds(50))
        #expect(!g.hasReturned, "it stopped waiting below the cap with an announced append on its way")
        let b = try await queueCaller(queue, consuming: nil)
        let waited = try #require(await g.result())
        #expect(waited < .seconds(5), "waited \(waited)")
        #expect(queue.expected == 1)  // still on its way, but the batch is full
        release(queue)
        await a.value
        await b.value
        announcement.withdraw()
    }

    @Test func anAppendConsumesItsAnnouncementOnce() async throws {
        let queue = WriteQueue()
        let announcement = queue.expect()
        let a = try await queueCaller(queue, consuming: announcement)
        #expect(queue.expected == 0)
        announcement.withdraw()  // after the append: nothing to withdraw
        #expect(queue.expected == 0)
        release(queue)
        await a.value
    }
}
