# qseries: the two jobs of README.md, and what they need.
#
#   make reproduce   source -> generate -> check the series on Debian's QEMU
#   make check       lint, type checks and every test
#
# Both bootstrap what they need: Debian packages (installed when run as
# root, otherwise the apt-get line is printed) and a .venv with qseries.

PYTHON ?= python3
VENV ?= .venv
QSERIES_WORKDIR ?= $(CURDIR)/.work
export QSERIES_WORKDIR

# Debian packages: git and perl for QEMU's checkers, git-email for
# qseries send, dpkg-dev for dpkg-source, the archive keyring for the
# private apt configuration;
# a C toolchain, QEMU's build dependencies and seabios (firmware for the
# PC machines the tests start) for building QEMU and the fake device.
DEBIAN_PACKAGES = git git-email perl dpkg-dev xz-utils apt debian-archive-keyring \
	ca-certificates python3 python3-venv \
	gcc libc6-dev make ninja-build pkg-config libglib2.0-dev libfdt-dev \
	libpixman-1-dev seabios

BIN = $(VENV)/bin
STAMP = $(VENV)/.qseries-installed

.PHONY: all bootstrap reproduce check lint typecheck test qemu-tests clean

all: check

bootstrap: $(STAMP)

$(STAMP): pyproject.toml scripts/bootstrap-debian.sh
	@scripts/bootstrap-debian.sh $(DEBIAN_PACKAGES)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

# Every version is generated (patches/ must match what is committed) and
# checked; the newest is built and tested, on Debian's newest QEMU and,
# as the backport it is, on trixie's 10.0.x (OLD_BASE).
VERSIONS = v1 v2
NEWEST = v2
OLD_BASE = 10.0

reproduce: bootstrap
	$(BIN)/qseries source
	for v in $(VERSIONS); do $(BIN)/qseries generate --series $$v || exit 1; done
	@test -z "$$(git status --porcelain -- patches/)" || \
		{ echo "patches/ differs from a fresh generate: commit it" >&2; exit 1; }
	for v in $(VERSIONS); do $(BIN)/qseries check --series $$v || exit 1; done
	$(BIN)/qseries check --series $(NEWEST) --base-version $(OLD_BASE)
	$(BIN)/qseries test --series $(NEWEST)

lint: bootstrap
	$(BIN)/ruff check scripts tests
	$(BIN)/ruff format --check scripts tests

typecheck: bootstrap
	$(BIN)/mypy scripts/qseries tests

test: bootstrap
	$(BIN)/pytest -q

# For each version, the negative control first (the base with only the
# test patch: the cases that need the notice must fail for lack of it),
# then the whole series, rebuilt incrementally in the same build
# directory.  Then the newest version as a backport on OLD_BASE.
qemu-tests: bootstrap
	for v in $(VERSIONS); do \
		$(BIN)/qseries test --series $$v --control && \
		$(BIN)/qseries test --series $$v || exit 1; \
	done
	$(BIN)/qseries check --series $(NEWEST) --base-version $(OLD_BASE)
	$(BIN)/qseries test --series $(NEWEST) --base-version $(OLD_BASE) --no-mutations

check: lint typecheck test qemu-tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
