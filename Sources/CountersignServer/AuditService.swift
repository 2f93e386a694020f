public import CountersignConfig
import CountersignWire

/// The server's version, reported by `Health`.
public enum CountersignServerVersion {
    public static let string = "0.1.0"
}

/// What `Health` reports about this node, read at each call.
public struct NodeState: Sendable {
    /// `active` or `standby`.
    public var role: String
    public var activeAddress: String
    public var epoch: UInt64
    public var signerAvailable: Bool
    public var ledgerAvailable: Bool
    public var treeSize: UInt64
    /// SHA-256 of the policy in force (lowercase hex), `nil` when the policy file is invalid.
    public var policySHA256: String?

    public init(role: String, activeAddress: String, epoch: UInt64 = 0, signerAvailable: Bool = false,
                ledgerAvailable: Bool = false, treeSize: UInt64 = 0, policySHA256: String? = nil) {
        self.role = role
        self.activeAddress = activeAddress
        self.epoch = epoch
        self.signerAvailable = signerAvailable
        self.ledgerAvailable = ledgerAvailable
        self.treeSize = treeSize
        self.policySHA256 = policySHA256
    }
}

extension Router {
    /// `Audit.Health`, open to every pinned principal, answered on the event loop.
    public mutating func registerHealth(node: NodeSettings, state: @escaping @Sendable () -> NodeState) {
        inline(Method.health) { (_: HealthRequest, context: CallContext) in
            let s = state()
            var response = HealthResponse()
            response.node = node.name
            response.role = s.role
            response.version = CountersignServerVersion.string
            response.activeAddress = s.activeAddress
            response.epoch = s.epoch
            response.signerAvailable = s.signerAvailable
            response.ledgerAvailable = s.ledgerAvailable
            response.treeSize = s.treeSize
            response.principal = context.principal.id
            response.policyAvailable = s.policySHA256 != nil
            response.policySHA256 = s.policySHA256 ?? ""
            return response
        }
    }
}
