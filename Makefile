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

# Debian packages: git and perl for QEMU's checkers, dpkg-dev for
# dpkg-source, the archive keyring for the private apt configuration;
# a C toolchain, QEMU's build dependencies and seabios (firmware for the
# PC machines the tests start) for building QEMU and the fake device.
DEBIAN_PACKAGES = git perl dpkg-dev xz-utils apt debian-archive-keyring \
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

reproduce: bootstrap
	$(BIN)/qseries source
	$(BIN)/qseries generate
	@test -z "$$(git status --porcelain -- patches/)" || \
		{ echo "patches/ differs from a fresh generate: commit it" >&2; exit 1; }
	$(BIN)/qseries check
	$(BIN)/qseries test

lint: bootstrap
	$(BIN)/ruff check scripts tests
	$(BIN)/ruff format --check scripts tests

typecheck: bootstrap
	$(BIN)/mypy scripts/qseries tests

test: bootstrap
	$(BIN)/pytest -q

# The negative control first (the base with only the series' qtest: the
# tests must fail for lack of VFIO_MIGRATION_PREPARE), then the whole
# series, rebuilt incrementally in the same build directory.
qemu-tests: bootstrap
	$(BIN)/qseries test --control
	$(BIN)/qseries test

check: lint typecheck test qemu-tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
