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

# Debian packages: the sections of scripts/debian-packages, the one list
# (with why each package is there), read by scripts/bootstrap-debian.sh:
# [bootstrap] for everything qseries runs, [test] for what only the
# tests need.
PACKAGES = scripts/debian-packages

BIN = $(VENV)/bin
STAMP = $(VENV)/.qseries-installed

.PHONY: all bootstrap reproduce check lint typecheck test qemu-tests \
	fixture-tests integration-tests clean

all: check

bootstrap: $(STAMP)

$(STAMP): pyproject.toml scripts/bootstrap-debian.sh $(PACKAGES)
	@scripts/bootstrap-debian.sh bootstrap
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

# The newest version is reproduced: checked, bisected, built and
# tested, negative control, mutations and fault matrix included, with
# the reports (JUnit, JSON, markdown, the timeline picture, the fault
# table) in the directory it prints; then every older one, on the fake
# (its check includes `fresh`: patches/vN equal to a fresh generate on
# the base its cover letter names, or on what stands in for it once
# Debian dropped it).
VERSIONS = v1 v2
NEWEST = v2
# The N-device migration of the main job (fake and mtty, which gives at
# most 12 devices per side), with the fault matrix and its one-of-N
# cases; the older versions on the fake, with their mutations and fault
# matrix too.
REPRODUCE_DEVICES = 12
# Then the newest on every base of its range (the matrix: Debian's 10.2.x
# and trixie's 10.0.x), where the default base is only rebuilt
# incrementally, and every older one on trixie's line too, STABLE, which
# every range includes so that a base remains when sid moves on; those on
# the fake only, the fault matrix left to the default base's runs.
STABLE = 10.0

reproduce: bootstrap
	$(BIN)/qseries source
	$(BIN)/qseries reproduce --series $(NEWEST) --devices $(REPRODUCE_DEVICES)
	for v in $(filter-out $(NEWEST),$(VERSIONS)); do \
		$(BIN)/qseries reproduce --series $$v --device fake --no-bisect \
			--devices $(REPRODUCE_DEVICES) || exit 1; done
	$(BIN)/qseries matrix --series $(NEWEST) --no-bisect --no-mutations \
		--no-faults
	for v in $(filter-out $(NEWEST),$(VERSIONS)); do \
		$(BIN)/qseries reproduce --series $$v --base-version $(STABLE) \
			--no-bisect --no-mutations --no-faults --device fake || exit 1; done

lint: bootstrap
	$(BIN)/ruff check scripts tests
	$(BIN)/ruff format --check scripts tests

typecheck: bootstrap
	$(BIN)/mypy scripts/qseries tests

# What only the tests need ([test] of $(PACKAGES)): Chromium, rsync,
# gitlab-ci-local's toolchain, debootstrap.  Not in bootstrap: every CI
# job bootstraps, and needs none of these.
test: bootstrap
	@scripts/bootstrap-debian.sh test
	$(BIN)/pytest -q --durations=30

# The newest version reproduced on its default base (the negative
# control first, then the series with its bisect and mutations), on both
# devices: the fake and the kernel's mtty in a guest, with 8 devices per
# side, the fake's over multifd (SCALE), series and control; the older
# versions there on the fake, without bisect, mutations and N devices.
# What else proves the series runs in `make reproduce`, to keep this
# within its budget of 40 minutes: the fault matrix (its one-of-N cases
# included), 12 devices with multifd off, v1's mutations, and the
# matrix (every version on trixie's 10.0.x too: a second cold build);
# every other N in `qseries bench --devices`.
SCALE = --devices 8 --multifd

qemu-tests: bootstrap
	$(BIN)/qseries reproduce --series $(NEWEST) --device both --no-faults \
		$(SCALE)
	for v in $(filter-out $(NEWEST),$(VERSIONS)); do \
		$(BIN)/qseries reproduce --series $$v --device fake --no-bisect \
			--no-mutations --no-faults || exit 1; done

# The repository's QMP tests (tests/integration: the qmp checks, the
# files a failure keeps, the timeline picture in Chromium, N devices,
# multifd) on the newest version's QEMU and fake, as `qseries build
# --json` names them (after qemu-tests, nothing is rebuilt; the older
# versions' qmp checks ran in their reproduce).  QEMU missing is a
# failure here, not a skip.
BUILD_JSON = $(QSERIES_WORKDIR)/integration-build.json

integration-tests: bootstrap
	@scripts/bootstrap-debian.sh test
	mkdir -p "$(QSERIES_WORKDIR)"
	$(BIN)/qseries build --series $(NEWEST) --json > "$(BUILD_JSON)"
	QSERIES_BUILD_JSON="$(BUILD_JSON)" QSERIES_REQUIRE_QEMU=1 \
		$(BIN)/pytest -q tests/integration

# The series kept here besides the VFIO one (series/*): acceptance
# fixtures with no lab, each reproduced end to end on the default base:
# check (QEMU's QAPI parser and checkers), bisect, build, and QEMU's own
# tests that the change touches, with the control (the base with only
# the series' test patches).  After qemu-tests, the base's build dir is
# built: each is an incremental build of a few dozen steps.
FIXTURES = series/qom-type-info series/yank-doc

fixture-tests: bootstrap
	for s in $(FIXTURES); do \
		$(BIN)/qseries --series-file $$s/series.yaml reproduce || exit 1; done

check: lint typecheck test qemu-tests fixture-tests integration-tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
