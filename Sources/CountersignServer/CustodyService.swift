import CountersignConfig
import CountersignSigner
import CountersignWire

extension Router {
    /// `Audit.ListKeys` (every pinned principal) and the `Custody` service (officers; ListKeys also
    /// auditors). A proposal and its approval are attributed to the officers' pinned certificates,
    /// never to anything in the request body: an officer cannot approve their own proposal.
    mutating func registerCustody(_ custodian: KeyCustodian) {
        async(Method.auditListKeys) { (_: ListKeysRequest, _: CallContext) in
            await custodian.listKeys()
        }
        async(Method.custodyListKeys, roles: [.officer, .auditor]) { (_: ListKeysRequest, _: CallContext) in
            await custodian.listKeys()
        }
        async(Method.proposeRotation, roles: [.officer]) { (request: ProposeRotationRequest, context: CallContext) in
            // The reason goes into a signed key event, which every node reads at every start.
            guard request.reason.utf8.count <= maxRotationReasonBytes else {
                throw Status(.invalidArgument, "reason must be at most \(maxRotationReasonBytes) bytes")
            }
            var algorithm: KeyAlgorithm?
            if !request.algorithm.isEmpty {
                guard let a = KeyAlgorithm(rawValue: request.algorithm) else {
                    throw Status(.invalidArgument, "algorithm must be one of \(KeyAlgorithm.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                algorithm = a
            }
            return try await custodian.propose(by: context.principal.id, reason: request.reason, algorithm: algorithm)
        }
        async(Method.approveRotation, roles: [.officer]) { (request: ApproveRotationRequest, context: CallContext) in
            try await custodian.approve(proposalID: request.proposalID, by: context.principal.id)
        }
    }
}

/// Longest reason a rotation proposal may give.
let maxRotationReasonBytes = 1024
