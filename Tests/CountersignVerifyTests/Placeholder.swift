// CountersignVerifyTests: tests arrive with issue 4.
