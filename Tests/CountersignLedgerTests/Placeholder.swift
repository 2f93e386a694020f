// CountersignLedgerTests: tests arrive with issue 5.
