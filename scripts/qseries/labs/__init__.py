"""Labs: the proofs particular to one series, kept out of the core.

A lab holds what only its series needs to be proven: devices to run
it on, scenarios, expectations.  The core never imports a lab by name.
"""
