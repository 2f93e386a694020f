public import CountersignConfig
public import CountersignWire
public import Logging

/// What a handler knows about the call it serves.
public struct CallContext: Sendable {
    /// Who is calling, from the pinned client certificate (never from the request body).
    public let principal: Principal
    public let method: String
    public let callID: UInt64
    /// When the caller stops waiting.
    public let deadline: ContinuousClock.Instant
    public var logger: Logger

    public init(principal: Principal, method: String, callID: UInt64, deadline: ContinuousClock.Instant, logger: Logger) {
        self.principal = principal
        self.method = method
        self.callID = callID
        self.deadline = deadline
        self.logger = logger
    }
}

/// An error that knows its wire status (as grpc-swift's `RPCErrorConvertible`).
public protocol StatusConvertible: Error {
    var status: Status { get }
}

extension Status: StatusConvertible {
    public var status: Status { self }
}

extension ProtoError: StatusConvertible {
    public var status: Status {
        Status(code == .tooLarge ? .resourceExhausted : .invalidArgument, "malformed request: \(self)")
    }
}

extension Status {
    /// The status an error becomes on the wire. An error that does not know its status is
    /// `INTERNAL` with a generic message; its details go to the log only.
    static func from(_ error: any Error) -> Status {
        if let convertible = error as? any StatusConvertible { return convertible.status }
        if error is CancellationError { return Status(.cancelled, "the call was cancelled") }
        return Status(.internal, "internal error")
    }
}

/// One method: who may call it, and the code that answers it.
public struct Route: Sendable {
    public enum Handler: Sendable {
        /// Answered on the connection's event loop: only for work that never blocks (Health).
        case inline(@Sendable ([UInt8], CallContext) throws -> [UInt8])
        /// Answered in a task of its own, bounded by the call's deadline.
        case async(@Sendable ([UInt8], CallContext) async throws -> [UInt8])
    }

    /// Roles that may call the method; `nil` means every pinned principal.
    public var roles: Set<Role>?
    public var handler: Handler
}

/// Maps method names to routes. Unknown methods are `UNIMPLEMENTED`; a method the caller's role may
/// not use is `PERMISSION_DENIED`; neither closes the connection.
public struct Router: Sendable {
    private(set) var routes: [String: Route] = [:]
    /// Called for every call refused with `PERMISSION_DENIED`, so that refusals can be ledgered.
    public var onRefusal: (@Sendable (CallContext, Status) async -> Void)?

    public init() {}

    /// Registers a method answered on the event loop (non-blocking work only).
    public mutating func inline<Request: ProtoMessage, Response: ProtoMessage>(
        _ method: String, roles: Set<Role>? = nil, _ body: @escaping @Sendable (Request, CallContext) throws -> Response
    ) {
        routes[method] = Route(roles: roles, handler: .inline { bytes, context in
            try body(try Request(protobuf: bytes), context).protobufBytes()
        })
    }

    /// Registers a method answered in a task of its own.
    public mutating func async<Request: ProtoMessage, Response: ProtoMessage>(
        _ method: String, roles: Set<Role>? = nil, _ body: @escaping @Sendable (Request, CallContext) async throws -> Response
    ) {
        routes[method] = Route(roles: roles, handler: .async { bytes, context in
            try await body(try Request(protobuf: bytes), context).protobufBytes()
        })
    }

    func route(for method: String) -> Route? { routes[method] }
}
