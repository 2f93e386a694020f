// CountersignServerTests: tests arrive with issue 2.
