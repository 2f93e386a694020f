import Foundation

/// A proto3 enum: open, so an unknown number read from the wire is kept, not an error.
public protocol ProtoEnum: RawRepresentable<Int32>, Hashable, Sendable, CustomStringConvertible {
    init(rawValue: Int32)
    /// Names without the type prefix, indexed by number (e.g. `["UNSPECIFIED", "APPROVED", …]`).
    static var names: [String] { get }
}

extension ProtoEnum {
    public var description: String {
        rawValue >= 0 && Int(rawValue) < Self.names.count ? Self.names[Int(rawValue)] : "\(rawValue)"
    }

    /// The value whose name is `name` (without prefix, any case), if any.
    public init?(name: String) {
        guard let index = Self.names.firstIndex(where: { $0.caseInsensitiveCompare(name) == .orderedSame }) else { return nil }
        self.init(rawValue: Int32(index))
    }
}

/// `countersign.v1.Verdict`.
public struct Verdict: ProtoEnum {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let unspecified = Verdict(rawValue: 0)
    public static let approved = Verdict(rawValue: 1)
    public static let veto = Verdict(rawValue: 2)
    public static let escalate = Verdict(rawValue: 3)
    public static let names = ["UNSPECIFIED", "APPROVED", "VETO", "ESCALATE"]
}

/// `countersign.v1.Enforcement`: how a finding binds.
public struct Enforcement: ProtoEnum {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let unspecified = Enforcement(rawValue: 0)
    /// Veto; no human can lift it through the API.
    public static let hard = Enforcement(rawValue: 1)
    /// Veto; overridable.
    public static let intent = Enforcement(rawValue: 2)
    /// Escalates until an authenticated person confirms.
    public static let confirm = Enforcement(rawValue: 3)
    /// Escalates; overridable by approval level.
    public static let soft = Enforcement(rawValue: 4)
    /// A note.
    public static let advisory = Enforcement(rawValue: 5)
    public static let names = ["UNSPECIFIED", "HARD", "INTENT", "CONFIRM", "SOFT", "ADVISORY"]
}

/// `countersign.v1.ExecutionVerdict`.
public struct ExecutionVerdict: ProtoEnum {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let unspecified = ExecutionVerdict(rawValue: 0)
    public static let match = ExecutionVerdict(rawValue: 1)
    public static let deviation = ExecutionVerdict(rawValue: 2)
    public static let names = ["UNSPECIFIED", "MATCH", "DEVIATION"]
}

