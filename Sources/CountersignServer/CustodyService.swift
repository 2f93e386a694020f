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
            try await custodian.propose(request, by: context.principal.id)
        }
        async(Method.approveRotation, roles: [.officer]) { (request: ApproveRotationRequest, context: CallContext) in
            try await custodian.approve(proposalID: request.proposalID, by: context.principal.id)
        }
    }
}
