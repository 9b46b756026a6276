# qseries: the two jobs of README.md, and what they need.
#
#   make reproduce   source -> check -> reproduce (check, build, test, reports)
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
# PC machines the tests start) for building QEMU and the fake device;
# ccache, which the builds use (its cache is in the work dir).
DEBIAN_PACKAGES = git git-email perl dpkg-dev xz-utils apt debian-archive-keyring \
	ca-certificates python3 python3-venv \
	gcc libc6-dev make ninja-build pkg-config libglib2.0-dev libfdt-dev \
	libpixman-1-dev seabios ccache

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

# Every older version is checked (its `fresh` check: patches/vN equal to
# a fresh generate on the base its cover letter names, or on what stands
# in for it once Debian dropped it); then the newest is reproduced:
# checked, bisected, built and tested, negative control, mutations and
# fault matrix included, with the reports (JUnit, JSON, markdown, the
# timeline picture, the fault table) in the directory it prints.
VERSIONS = v1 v2
NEWEST = v2

reproduce: bootstrap
	$(BIN)/qseries source
	for v in $(filter-out $(NEWEST),$(VERSIONS)); do \
		$(BIN)/qseries check --series $$v || exit 1; done
	$(BIN)/qseries reproduce --series $(NEWEST)

lint: bootstrap
	$(BIN)/ruff check scripts tests
	$(BIN)/ruff format --check scripts tests

typecheck: bootstrap
	$(BIN)/mypy scripts/qseries tests

# What only the tests need: Chromium, to look at the timeline picture;
# rsync and gitlab-ci-local from npm (its re2 is built with node-gyp:
# g++) for the GitLab CI job run; Debian's npm only where no npm is
# installed (nodesource's nodejs ships its own).  Not in bootstrap:
# every CI job bootstraps, and needs none of these.
TEST_PACKAGES = chromium rsync g++ $(if $(shell command -v npm 2>/dev/null),,nodejs npm)

test: bootstrap
	@scripts/bootstrap-debian.sh $(TEST_PACKAGES)
	$(BIN)/pytest -q

# Each version reproduced on its default base (the negative control
# first, then the series with its mutations), then the newest on every
# base of its range (the matrix: Debian's 10.2.x and trixie's 10.0.x),
# where the default base is only rebuilt incrementally.
qemu-tests: bootstrap
	for v in $(VERSIONS); do $(BIN)/qseries reproduce --series $$v || exit 1; done
	$(BIN)/qseries matrix --series $(NEWEST) --no-bisect --no-mutations

check: lint typecheck test qemu-tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
