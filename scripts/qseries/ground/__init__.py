"""The ground floor: what every other part of qseries stands on.

Errors (one line, a hint, an exit code), console output, the one bounded
process runner that every external command goes through (and the
sandbox and run records it uses), git's command lines, atomic writes and
the work dir.  Nothing here knows what a series or QEMU is.
"""
