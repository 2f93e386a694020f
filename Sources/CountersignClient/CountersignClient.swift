// CountersignClient: its code arrives with issue 2. See Package.swift for the module's job.
