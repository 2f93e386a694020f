/// An error of the ledger. `code` is extensible; `description` says little (safe for a client),
/// `debugDescription` says all (SQL errors and causes go to logs only).
public struct LedgerError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Value: Hashable, Sendable {
            case unavailable, staleEpoch, leaseLost, outOfRange, notFound, conflict, exists, invalidArgument, corrupt, schema
        }
        let value: Value

        /// The database cannot be reached, timed out or failed (wire: `UNAVAILABLE`).
        public static let unavailable = Code(value: .unavailable)
        /// The append carried an epoch that is not the lease's, or the lease expired (wire: `UNAVAILABLE`).
        public static let staleEpoch = Code(value: .staleEpoch)
        /// The lease is held by someone else (wire: `UNAVAILABLE`).
        public static let leaseLost = Code(value: .leaseLost)
        /// An index or tree size outside the tree (wire: `OUT_OF_RANGE`).
        public static let outOfRange = Code(value: .outOfRange)
        /// Nothing stored yet, e.g. no checkpoint (wire: `NOT_FOUND`).
        public static let notFound = Code(value: .notFound)
        /// Another writer appended concurrently; the batch was rolled back (wire: `UNAVAILABLE`).
        public static let conflict = Code(value: .conflict)
        /// The ledger already holds a decision for this request id; nothing was appended (wire:
        /// `ALREADY_EXISTS`).
        public static let exists = Code(value: .exists)
        /// Bad input from the caller (wire: `INVALID_ARGUMENT`).
        public static let invalidArgument = Code(value: .invalidArgument)
        /// Stored data does not agree with itself (wire: `INTERNAL`).
        public static let corrupt = Code(value: .corrupt)
        /// The schema is missing or newer than this program (wire: `FAILED_PRECONDITION`).
        public static let schema = Code(value: .schema)

        public var description: String { "\(value)" }

        /// The gRPC status name the wire layer should answer with.
        public var wireStatus: String {
            switch value {
            case .unavailable, .staleEpoch, .leaseLost, .conflict: "UNAVAILABLE"
            case .outOfRange: "OUT_OF_RANGE"
            case .notFound: "NOT_FOUND"
            case .exists: "ALREADY_EXISTS"
            case .invalidArgument: "INVALID_ARGUMENT"
            case .corrupt: "INTERNAL"
            case .schema: "FAILED_PRECONDITION"
            }
        }
    }

    public var code: Code
    public var message: String
    public var cause: (any Error)?
    public var file: String
    public var line: Int

    public init(_ code: Code, _ message: String, cause: (any Error)? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.cause = cause
        self.file = file
        self.line = line
    }

    public var description: String { "ledger \(code): \(message)" }

    public var debugDescription: String {
        var s = "LedgerError(\(code)) \(message) at \(file):\(line)"
        if let cause { s += "; cause: \(String(reflecting: cause))" }
        return s
    }

    static func unavailable(_ message: String, cause: (any Error)? = nil, file: String = #fileID, line: Int = #line) -> LedgerError {
        LedgerError(.unavailable, message, cause: cause, file: file, line: line)
    }

    static func outOfRange(_ message: String, file: String = #fileID, line: Int = #line) -> LedgerError {
        LedgerError(.outOfRange, message, file: file, line: line)
    }
}
