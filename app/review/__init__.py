"""The review's checks of what a change does to the tests: parsed (tamper) and run (outcome)."""
