#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// One mutex with three condition variables: `work` (the signing threads wait for jobs), `session`
/// (callers signing on their own thread wait for a free session) and `control` (the supervisor and
/// `shutdown` wait for state changes). Separate conditions so that a new job wakes exactly one
/// signing thread and never the supervisor.
final class Monitor: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let workCond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let controlCond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let sessionCond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(workCond, nil)
        pthread_cond_init(controlCond, nil)
        pthread_cond_init(sessionCond, nil)
    }

    deinit {
        pthread_cond_destroy(workCond)
        pthread_cond_destroy(controlCond)
        pthread_cond_destroy(sessionCond)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        workCond.deallocate()
        controlCond.deallocate()
        sessionCond.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }

    func waitWork() { pthread_cond_wait(workCond, mutex) }
    func signalWork() { pthread_cond_signal(workCond) }
    func broadcastWork() { pthread_cond_broadcast(workCond) }

    func waitControl() { pthread_cond_wait(controlCond, mutex) }
    func broadcastControl() { pthread_cond_broadcast(controlCond) }

    func signalSession() { pthread_cond_signal(sessionCond) }
    func broadcastSession() { pthread_cond_broadcast(sessionCond) }

    /// Waits on `control` for at most `seconds`. Returns `false` on timeout.
    @discardableResult
    func waitControl(seconds: Double) -> Bool { timedWait(controlCond, seconds) }

    /// Waits on `session` for at most `seconds`. Returns `false` on timeout.
    @discardableResult
    func waitSession(seconds: Double) -> Bool { timedWait(sessionCond, seconds) }

    private func timedWait(_ condition: UnsafeMutablePointer<pthread_cond_t>, _ seconds: Double) -> Bool {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let whole = Int(seconds)
        var deadline = timespec(tv_sec: now.tv_sec + whole, tv_nsec: now.tv_nsec + Int((seconds - Double(whole)) * 1e9))
        if deadline.tv_nsec >= 1_000_000_000 {
            deadline.tv_sec += 1
            deadline.tv_nsec -= 1_000_000_000
        }
        return pthread_cond_timedwait(condition, mutex, &deadline) == 0
    }
}
