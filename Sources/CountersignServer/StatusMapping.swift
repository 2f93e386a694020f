public import CountersignLedger
public import CountersignPolicy
public import CountersignSigner
public import CountersignWire

// Domain errors know their wire status. Fail secure: anything that stops a statement from being
// signed or ledgered is UNAVAILABLE, so the caller retries and nothing is approved.

extension LedgerError: StatusConvertible {
    public var status: Status {
        switch code {
        case .outOfRange: Status(.outOfRange, message)
        case .notFound: Status(.notFound, message)
        case .invalidArgument: Status(.invalidArgument, message)
        case .leaseLost, .staleEpoch: Status(.unavailable, "this node does not hold the ledger lease: \(message)")
        default: Status(.unavailable, "the ledger is unavailable; nothing was decided (\(code))")
        }
    }
}

extension SignerError: StatusConvertible {
    public var status: Status {
        switch code {
        case .invalidArgument: Status(.invalidArgument, message)
        case .unknownProposal: Status(.notFound, message)
        case .proposalExpired: Status(.failedPrecondition, message)
        case .selfApproval: Status(.permissionDenied, message)
        case .rotationInProgress, .alreadyBootstrapped: Status(.failedPrecondition, message)
        default: Status(.unavailable, "the signing token is unavailable; nothing was decided (\(code))")
        }
    }
}

extension PolicyError: StatusConvertible {
    public var status: Status {
        switch code {
        case .invalidPolicy: Status(.unavailable, "the policy bundle is invalid; nothing can be approved")
        case .tooLarge: Status(.resourceExhausted, description)
        default: Status(.invalidArgument, description)
        }
    }
}
