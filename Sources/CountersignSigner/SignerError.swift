/// An error of the signer or of key custody.
///
/// `description` is short and safe to show a client; `debugDescription` adds the PKCS#11 return
/// value, the operation and where the error was made, for logs. No error ever contains a PIN.
public struct SignerError: Error, Hashable, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// What went wrong. Extensible: new codes break nobody.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Value: Hashable, Sendable {
            case unavailable, noActiveKey, unknownKey, keyGeneration, invalidArgument
            case unknownProposal, proposalExpired, selfApproval, rotationInProgress, notBootstrapped
            case alreadyBootstrapped, keyEventLog, keyChain
        }
        let value: Value
        /// The token cannot sign now (missing token, wrong PIN, lost session, failing C_Sign).
        /// The signer recovers by itself. Wire status `UNAVAILABLE`.
        public static let unavailable = Code(value: .unavailable)
        /// No key is active yet (run the key ceremony). Wire status `FAILED_PRECONDITION`.
        public static let noActiveKey = Code(value: .noActiveKey)
        /// A key id that the token does not hold. Wire status `NOT_FOUND`.
        public static let unknownKey = Code(value: .unknownKey)
        /// The token refused to generate a key. Wire status `UNAVAILABLE`.
        public static let keyGeneration = Code(value: .keyGeneration)
        /// Bad input (an unknown algorithm, an empty officer id). Wire status `INVALID_ARGUMENT`.
        public static let invalidArgument = Code(value: .invalidArgument)
        /// No rotation proposal has this id. Wire status `NOT_FOUND`.
        public static let unknownProposal = Code(value: .unknownProposal)
        /// The proposal was not approved within `token.proposal_ttl_seconds`. Wire status `FAILED_PRECONDITION`.
        public static let proposalExpired = Code(value: .proposalExpired)
        /// An officer tried to approve their own proposal. Wire status `PERMISSION_DENIED`.
        public static let selfApproval = Code(value: .selfApproval)
        /// Another rotation is running. Wire status `ABORTED`.
        public static let rotationInProgress = Code(value: .rotationInProgress)
        /// The keyring has no first key yet. Wire status `FAILED_PRECONDITION`.
        public static let notBootstrapped = Code(value: .notBootstrapped)
        /// The keyring already has a first key. Wire status `ALREADY_EXISTS`.
        public static let alreadyBootstrapped = Code(value: .alreadyBootstrapped)
        /// The key-event log cannot be read or written. Wire status `UNAVAILABLE`.
        public static let keyEventLog = Code(value: .keyEventLog)
        /// The recorded key events do not verify. Wire status `DATA_LOSS`.
        public static let keyChain = Code(value: .keyChain)
        public var description: String { "\(value)" }
    }

    public var code: Code
    public var message: String
    /// The PKCS#11 return value, when the token returned one.
    public var returnValue: UInt?
    /// The PKCS#11 function or step that failed (`C_Login`, `C_Sign`, …).
    public var operation: String?
    /// `String(reflecting:)` of the underlying error, if any (for logs).
    public var cause: String?
    private let file: String
    private let line: Int

    public init(_ code: Code, _ message: String, returnValue: UInt? = nil, operation: String? = nil,
                cause: (any Error)? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.returnValue = returnValue
        self.operation = operation
        self.cause = cause.map { String(reflecting: $0) }
        self.file = file
        self.line = line
    }

    /// An error from a PKCS#11 call, naming its `CKR_` value.
    static func pkcs11(_ rv: UInt, _ operation: String, code: Code = .unavailable,
                       file: String = #fileID, line: Int = #line) -> SignerError {
        SignerError(code, "token unavailable: \(operation) returned \(CKR.name(rv))", returnValue: rv,
                    operation: operation, file: file, line: line)
    }

    /// The `CKR_` name of ``returnValue``, if any.
    public var returnValueName: String? { returnValue.map(CKR.name) }

    /// The gRPC status code the wire layer should answer with.
    public var grpcStatusCode: UInt32 {
        switch code.value {
        case .unavailable, .keyGeneration, .keyEventLog: 14
        case .noActiveKey, .notBootstrapped, .proposalExpired: 9
        case .unknownKey, .unknownProposal: 5
        case .invalidArgument: 3
        case .selfApproval: 7
        case .rotationInProgress: 10
        case .alreadyBootstrapped: 6
        case .keyChain: 15
        }
    }

    public var description: String { message }

    public var debugDescription: String {
        var s = "SignerError(\(code)): \(message)"
        if let rv = returnValue { s += " [\(CKR.name(rv)) = 0x\(String(rv, radix: 16))]" }
        if let operation { s += " in \(operation)" }
        if let cause { s += "; cause: \(cause)" }
        s += " (\(file):\(line))"
        return s
    }

    public static func == (a: SignerError, b: SignerError) -> Bool {
        a.code == b.code && a.message == b.message && a.returnValue == b.returnValue && a.operation == b.operation
    }

    public func hash(into h: inout Hasher) {
        h.combine(code)
        h.combine(message)
        h.combine(returnValue)
    }
}

