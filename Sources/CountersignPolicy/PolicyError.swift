/// An error from the policy engine: a plan, an Infracost document or a policy file that cannot be
/// used. A bad input is always this error, never a crash.
///
/// `code` is extensible: new codes may be added without breaking callers, so switch on it with a
/// `default`. `description` says what is wrong in a sentence that is safe to show to a client (it
/// never quotes plan content); `debugDescription` adds where it was raised and the cause.
public struct PolicyError: Error, Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    /// What kind of error this is.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Wrapped: String, Sendable, Hashable {
            case invalidJSON = "invalid-json"
            case tooLarge = "too-large"
            case unsupportedFormatVersion = "unsupported-format-version"
            case invalidPlan = "invalid-plan"
            case unknownPlanFormat = "unknown-plan-format"
            case invalidInfracost = "invalid-infracost"
            case invalidPolicy = "invalid-policy"
        }
        private let wrapped: Wrapped
        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// The bytes are not strict JSON (syntax, invalid UTF-8, duplicate keys, nesting too deep,
        /// a number out of range).
        public static let invalidJSON = Code(.invalidJSON)
        /// The input is larger than `PlanLimits` allows.
        public static let tooLarge = Code(.tooLarge)
        /// A Terraform plan whose `format_version` is not ≥ 0.1 and < 2.0.
        public static let unsupportedFormatVersion = Code(.unsupportedFormatVersion)
        /// Valid JSON that is not a plan of the stated format (a wrong type, a missing field).
        public static let invalidPlan = Code(.invalidPlan)
        /// A plan format other than `terraform-json` or `changeset-json`.
        public static let unknownPlanFormat = Code(.unknownPlanFormat)
        /// The Infracost document is not usable.
        public static let invalidInfracost = Code(.invalidInfracost)
        /// The policy file is not valid (the message names the key).
        public static let invalidPolicy = Code(.invalidPolicy)

        /// A stable short name, such as `invalid-json`.
        public var description: String { wrapped.rawValue }
    }

    /// What kind of error this is.
    public var code: Code
    /// What is wrong, in one sentence safe to show to a client.
    public var message: String
    /// The underlying error, if any (may hold details for logs only).
    public var cause: String?
    /// Where the error was raised (for logs).
    public var location: String

    /// Makes an error. Prefer the factory functions, which record where they were called.
    public init(code: Code, message: String, cause: String? = nil, fileID: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.cause = cause
        self.location = "\(fileID):\(line)"
    }

    public var description: String { "\(code): \(message)" }

    public var debugDescription: String {
        var s = "PolicyError(\(code)) at \(location): \(message)"
        if let cause { s += " (cause: \(cause))" }
        return s
    }

    /// The gRPC status code name a server should answer with (`INVALID_ARGUMENT` for every bad
    /// input, `RESOURCE_EXHAUSTED` for one that is too large).
    public var grpcStatusName: String {
        code == .tooLarge ? "RESOURCE_EXHAUSTED" : "INVALID_ARGUMENT"
    }

    static func invalidJSON(_ message: String, fileID: String = #fileID, line: Int = #line) -> PolicyError {
        PolicyError(code: .invalidJSON, message: message, fileID: fileID, line: line)
    }
    static func tooLarge(_ message: String, fileID: String = #fileID, line: Int = #line) -> PolicyError {
        PolicyError(code: .tooLarge, message: message, fileID: fileID, line: line)
    }
    static func invalidPlan(_ message: String, fileID: String = #fileID, line: Int = #line) -> PolicyError {
        PolicyError(code: .invalidPlan, message: message, fileID: fileID, line: line)
    }
    static func unsupportedFormatVersion(_ message: String, fileID: String = #fileID, line: Int = #line) -> PolicyError {
        PolicyError(code: .unsupportedFormatVersion, message: message, fileID: fileID, line: line)
    }
    static func invalidInfracost(_ message: String, fileID: String = #fileID, line: Int = #line) -> PolicyError {
        PolicyError(code: .invalidInfracost, message: message, fileID: fileID, line: line)
    }
    static func invalidPolicy(_ message: String, cause: String? = nil, fileID: String = #fileID, line: Int = #line) -> PolicyError {
        PolicyError(code: .invalidPolicy, message: message, cause: cause, fileID: fileID, line: line)
    }
}
