// CountersignPolicyTests: tests arrive with issue 3.
