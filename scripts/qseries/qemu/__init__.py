"""The QEMU side: base trees, composing a series on them, checking,
building and testing.

source gets a base tree (Debian's source package, a git ref or the
user's tree, read only); generate commits the series on it; check runs
QEMU's own checkers on the result; build configures and builds it with
meson and ninja; testing runs qtests.
"""
