// CountersignSigner: its code arrives with issue 4. See Package.swift for the module's job.
