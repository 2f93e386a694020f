// CountersignPolicy: its code arrives with issue 3. See Package.swift for the module's job.
