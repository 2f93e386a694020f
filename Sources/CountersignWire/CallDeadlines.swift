public import NIOCore

/// The deadlines of the calls in flight on one connection, served by a single timer on the
/// connection's event loop, armed for the earliest of them. Used on both ends of a connection: the
/// server answers a call `DEADLINE_EXCEEDED` at its deadline, the client gives a call up shortly
/// after it.
///
/// Why one timer and not one per call: an event loop cancels a scheduled task by a linear search
/// of all of its timers, and nearly every call ends before its deadline, so a timer per call means
/// every call walks the loop's timers. This one is armed again only when a call comes with a
/// deadline earlier than the one it waits for, and, when it fires, for the earliest deadline left.
///
/// Confined to its event loop, like the channel handler that owns it.
public struct CallDeadlines<Call> {
    /// The calls in flight by `call_id`, each with its deadline.
    public private(set) var calls: [UInt64: (deadline: NIODeadline, call: Call)] = [:]
    private var timer: (at: NIODeadline, task: Scheduled<Void>)?

    public init() {}

    public var isEmpty: Bool { calls.isEmpty }
    public var count: Int { calls.count }
    public func contains(_ callID: UInt64) -> Bool { calls[callID] != nil }

    /// Adds a call. `expire` is what the timer runs when it fires; it must call
    /// ``expire(on:_:)``.
    public mutating func add(_ callID: UInt64, deadline: NIODeadline, _ call: Call, on loop: any EventLoop,
                             expire: @escaping @Sendable () -> Void) {
        calls[callID] = (deadline, call)
        if timer.map({ deadline < $0.at }) ?? true { arm(at: deadline, on: loop, expire) }
    }

    /// Removes a call that has ended; nil when it is not in flight (its deadline came first).
    public mutating func remove(_ callID: UInt64) -> Call? {
        calls.removeValue(forKey: callID)?.call
    }

    /// For the timer when it fires: removes and returns the calls whose deadline has passed, and
    /// arms the timer again for the earliest deadline left.
    public mutating func expire(on loop: any EventLoop, _ expire: @escaping @Sendable () -> Void) -> [(callID: UInt64, call: Call)] {
        timer = nil
        let now = NIODeadline.now()
        var due: [(callID: UInt64, call: Call)] = []
        var next: NIODeadline?
        for (callID, entry) in calls {
            if entry.deadline <= now {
                due.append((callID, entry.call))
            } else {
                next = min(next ?? entry.deadline, entry.deadline)
            }
        }
        for d in due { calls.removeValue(forKey: d.callID) }
        if let next { arm(at: next, on: loop, expire) }
        return due
    }

    /// Removes every call and stops the timer (the connection is gone); returns the calls.
    public mutating func removeAll() -> [Call] {
        timer?.task.cancel()
        timer = nil
        let all = calls.values.map(\.call)
        calls.removeAll()
        return all
    }

    private mutating func arm(at deadline: NIODeadline, on loop: any EventLoop, _ expire: @escaping @Sendable () -> Void) {
        timer?.task.cancel()
        timer = (deadline, loop.scheduleTask(deadline: deadline, expire))
    }
}
