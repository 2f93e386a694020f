/// A small deterministic generator (SplitMix64) for generated inputs: the robustness and
/// property tests (so that a failure replays from its seed) and `countersign plan corpus` (so that
/// two builds, on any machine, evaluate the same corpus). The standard library's generators make
/// no such promise. Not for anything secret.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A number in `0..<n` (0 when `n` ≤ 1), by remainder: stable across platforms and versions.
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }
}
