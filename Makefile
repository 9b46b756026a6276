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
# dpkg-source, the archive keyring for the private apt configuration.
DEBIAN_PACKAGES = git perl dpkg-dev xz-utils apt debian-archive-keyring \
	ca-certificates python3 python3-venv

BIN = $(VENV)/bin
STAMP = $(VENV)/.qseries-installed

.PHONY: all bootstrap reproduce check lint typecheck test clean

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

lint: bootstrap
	$(BIN)/ruff check scripts tests
	$(BIN)/ruff format --check scripts tests

typecheck: bootstrap
	$(BIN)/mypy scripts/qseries tests

test: bootstrap
	$(BIN)/pytest -q

check: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
