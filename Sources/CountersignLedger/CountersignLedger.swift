// CountersignLedger: its code arrives with issue 5. See Package.swift for the module's job.
