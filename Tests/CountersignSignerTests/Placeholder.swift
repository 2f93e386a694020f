// CountersignSignerTests: tests arrive with issue 4.
