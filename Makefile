# overlay.flannel: set-up and test commands. See README.md.
#
#   make cluster-demo  the main job: a local cluster of systemd hosts with docker,
#                      provisioned by playbooks/site.yml, and the overlay shown working
#   make test          every test: unit, real etcd, real namespaces, the test
#                      cluster end to end, sanity, lint
#   make demo          the modules alone on a local etcd (no hosts)
#   make docs          the collection's HTML docs site in build/docs/html
#
# All install what they need (apt packages and a pinned virtualenv in .venv).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
APT_PACKAGES := etcd-server etcd-client python3-venv python3-dev gcc openssl git iproute2 iperf3
STAMP := $(VENV)/.installed-$(shell cat requirements/*.txt | sha1sum | cut -c1-12)
# The oldest ansible-core that meta/runtime.yml claims, in a venv of its own (see test-min).
VENV_MIN ?= $(CURDIR)/.venv-min
STAMP_MIN := $(VENV_MIN)/.installed-$(shell sha1sum requirements/controller-min.txt | cut -c1-12)

.PHONY: all deps venv venv-min demo test test-locked checks-lane ledger test-min test-unit test-integration sanity lint bench clean \
	cluster-deps cluster-up cluster-down cluster-demo test-cluster release-lint docs wheelhouse controller test-debian13 \
	test-debian13-modules sanity-debian13

all: test

# Debian packages, installed only when one is missing: $(call apt_ensure,pkg ...)
define apt_ensure
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call apt_ensure,$(APT_PACKAGES))

venv: $(STAMP)

$(STAMP): requirements/controller.txt requirements/forwarder.txt requirements/test.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/test.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

venv-min: $(STAMP_MIN)

$(STAMP_MIN): requirements/controller-min.txt
	@test -x $(VENV_MIN)/bin/python || $(PYTHON) -m venv $(VENV_MIN)
	$(VENV_MIN)/bin/python -m pip install -q --upgrade pip
	$(VENV_MIN)/bin/python -m pip install -q -r requirements/controller-min.txt
	@rm -f $(VENV_MIN)/.installed-*
	@touch $@

demo: deps venv
	$(PY) tools/local_demo.py

test-unit: venv
	$(PY) -m pytest tests/unit

test-integration: deps venv
	$(PY) -m pytest tests/integration

sanity: deps venv
	VENV=$(VENV) tests/sanity/run.sh

lint: venv
	VENV=$(VENV) tests/lint/run.sh

# Every test, in two lanes that share the machine's two cores, after the set-up:
#   - the main pytest run (unit, integration, cluster) on two workers (pytest-xdist;
#     tests/support/lanes.py): the cluster tests on one, in order, the rest on the
#     other. Its closing "N passed" line is the whole suite's, and the last one
#     printed: CI reads it.
#   - beside it, the checks lane (`make checks-lane`, its output kept in
#     build/checks-lane.log and printed after pytest's): test-min (the module
#     tests with the oldest claimed ansible-core; pytest -qq prints no closing
#     line), the same module tests with ansible-core 2.20 inside the Debian 13
#     controller (test-debian13), release-lint, sanity with 2.16 and 2.19 here and
#     with 2.20 and 2.21 inside the Debian 13 controller, and ansible-lint. Sanity
#     and lint fail the run on any finding.
# Every step runs even when one before it failed, each recorded with its time in
# the ledger (tests/support/ledger.py: build/ledger.jsonl, with every test,
# playbook run, bring-up, reboot and deliberate wait inside them); its summary
# ends the run, which fails if any step did.
LEDGER_FILE := $(CURDIR)/build/ledger.jsonl
LEDGER := OVERLAY_FLANNEL_LEDGER=$(LEDGER_FILE) $(PYTHON) tests/support/ledger.py
CHECKS_LOG := $(CURDIR)/build/checks-lane.log
# One run at a time on a machine: the test cluster's names and underlay and the labs' addresses are the
# machine's, so a second `make test` waits for the first (tests/support/one_at_a_time.sh). What a run that was
# killed left behind, the next one removes (tests/support/claims.py).
TEST_LOCK := /run/lock/overlay-flannel-test.lock
test:
	@tests/support/one_at_a_time.sh $(TEST_LOCK) $(MAKE) --no-print-directory test-locked

test-locked:
	@mkdir -p build && rm -f $(LEDGER_FILE) $(CHECKS_LOG)
	@rc=0; \
	$(LEDGER) phase "setup (apt, venvs, Debian 13 controller)" -- $(MAKE) --no-print-directory deps cluster-deps venv venv-min controller || rc=1; \
	$(MAKE) --no-print-directory checks-lane >$(CHECKS_LOG) 2>&1 & checks=$$!; \
	$(LEDGER) phase "pytest (unit, integration, cluster)" -- \
	  env OVERLAY_FLANNEL_MIN_VENV=$(VENV_MIN) $(PY) -m pytest -n 2 tests/unit tests/integration tests/cluster || rc=1; \
	wait $$checks || rc=1; \
	echo "== the checks lane (build/checks-lane.log) =="; cat $(CHECKS_LOG); \
	$(LEDGER) summary; \
	exit $$rc

# The lane beside the main pytest run (see test): every step runs, the lane fails if
# one did. The cluster lane is the long pole, so the steps that only need CPU and
# wait on no clock (release-lint, sanity, lint) run at nice $(CHECKS_NICE): they take
# what the cluster tests leave. test-min waits on etcd timeouts, so it runs at the
# normal priority.
CHECKS_NICE := 15
checks-lane:
	@rc=0; \
	OVERLAY_FLANNEL_LEDGER_PHASE=test-min $(LEDGER) phase "test-min (oldest ansible-core)" -- \
	  env OVERLAY_FLANNEL_ANSIBLE_VENV=$(VENV_MIN) $(PY) -m pytest -qq $(MIN_TESTS) || rc=1; \
	$(LEDGER) phase "release-lint (changelog, docs)" -- nice -n $(CHECKS_NICE) $(MAKE) --no-print-directory release-lint || rc=1; \
	$(LEDGER) phase "sanity (ansible-core 2.16, oldest)" -- env VENV=$(VENV_MIN) nice -n $(CHECKS_NICE) tests/sanity/run.sh || rc=1; \
	$(LEDGER) phase "sanity (ansible-core 2.19, Debian 12)" -- env VENV=$(VENV) nice -n $(CHECKS_NICE) tests/sanity/run.sh || rc=1; \
	OVERLAY_FLANNEL_LEDGER_PHASE=test-debian13 $(LEDGER) phase "test-debian13 (ansible-core 2.20, Debian 13 controller)" -- \
	  nice -n $(CHECKS_NICE) $(MAKE) --no-print-directory test-debian13-modules || rc=1; \
	$(LEDGER) phase "sanity (ansible-core 2.20, Debian 13 controller)" -- \
	  nice -n $(CHECKS_NICE) $(MAKE) --no-print-directory sanity-debian13 DEBIAN13_CORE=2.20 || rc=1; \
	$(LEDGER) phase "sanity (ansible-core 2.21, Debian 13 controller)" -- \
	  nice -n $(CHECKS_NICE) $(MAKE) --no-print-directory sanity-debian13 DEBIAN13_CORE=2.21 || rc=1; \
	$(LEDGER) phase "ansible-lint" -- env VENV=$(VENV) nice -n $(CHECKS_NICE) tests/lint/run.sh || rc=1; \
	exit $$rc

# The time ledger of the last `make test` (or pytest run) again.
ledger:
	@$(LEDGER) summary

# The oldest claimed ansible-core (.venv-min), before the newest (.venv): the tests
# that run the modules against a real etcd, with that venv's python and
# ansible-playbook, and its ansible-test sanity. (Its site.yml run on the test
# cluster is tests/cluster/test_site_min_ansible.py, in the main run.)
MIN_TESTS := $(addprefix tests/integration/etcd/,test_ansible_under_test.py test_network_module.py \
	test_subnet_module.py test_subnet_info.py test_renew.py test_garbage_content.py test_connection.py \
	test_concurrency.py test_playbook.py test_etcd_cluster.py::test_the_modules_work_as_the_flannel_user)
test-min: deps venv venv-min
	OVERLAY_FLANNEL_ANSIBLE_VENV=$(VENV_MIN) $(PY) -m pytest $(MIN_TESTS)
	VENV=$(VENV_MIN) tests/sanity/run.sh

# The Debian 13 controller (tests/cluster/harness/controller.py): a copy of the test
# hosts' Debian 13 image with Python 3.13 and a virtualenv for each of ansible-core
# 2.20 and 2.21 (requirements/controller-2.20.txt, controller-2.21.txt), entered with
# chroot in the root network namespace; built once, cached under
# /var/cache/overlay-flannel/controllers/. In it: the module tests against a real
# etcd with 2.20 (the tests run here, the modules and plays in the controller),
# and ansible-test sanity of each version on the whole tree. (Its site.yml and
# report.yml runs with 2.21 from the built tarball are in tests/cluster/test_site_mixed.py.)
CONTROLLER_PATH = $$($(PYTHON) tests/cluster/harness/controller.py path)
DEBIAN13_CORE ?= 2.21
controller: cluster-deps
	$(PYTHON) tests/cluster/harness/controller.py build

test-debian13-modules:
	@ctl=$(CONTROLLER_PATH) && OVERLAY_FLANNEL_ANSIBLE_VENV=$$ctl/venv-2.20 OVERLAY_FLANNEL_CONTROLLER_BIND=$(CURDIR) \
	  $(PY) -m pytest -qq $(MIN_TESTS)

sanity-debian13:
	@ctl=$(CONTROLLER_PATH) && OVERLAY_FLANNEL_CONTROLLER_BIND=$(CURDIR) $$ctl/enter.sh $$ctl/rootfs \
	  /usr/bin/env VENV=/opt/ansible-$(DEBIAN13_CORE) SANITY_PYTHON=3.13 $(CURDIR)/tests/sanity/run.sh

# Both, with a full report (pytest's closing line): make test-debian13
test-debian13: deps venv controller
	OVERLAY_FLANNEL_ANSIBLE_VENV=$$($(PYTHON) tests/cluster/harness/controller.py path)/venv-2.20 \
	  OVERLAY_FLANNEL_CONTROLLER_BIND=$(CURDIR) $(PY) -m pytest $(MIN_TESTS)
	$(MAKE) --no-print-directory sanity-debian13 DEBIAN13_CORE=2.20
	$(MAKE) --no-print-directory sanity-debian13 DEBIAN13_CORE=2.21

bench: deps venv
	$(PY) bench/subnet_acquire.py

clean:
	rm -rf $(VENV) $(VENV_MIN) .cache .pytest_cache

# --- the systemd-nspawn test cluster (root; see tests/cluster/README.md) -------
#   make cluster-up      bring up CLUSTER_HOSTS hosts (image built once, cached)
#   make cluster-demo    cluster-up, site.yml on it, then each host's subnet and
#                        a container on every host pinging one on every other host
#   make cluster-down    tear it down (by recorded PIDs)
#   make test-cluster    pytest tests/cluster (its own cluster, or
#                        OVERLAY_FLANNEL_CLUSTER_STATE=DIR to reuse one)
CLUSTER_STATE ?= /tmp/overlay-flannel-cluster
CLUSTER_HOSTS ?= 3
# The demo cluster's names and underlay, apart from the test cluster's ("" and 10.213.0): a demo left up does
# not stop `make test`.
CLUSTER_PREFIX ?= demo-
CLUSTER_UNDERLAY ?= 10.212.0
CLUSTER_APT_PACKAGES := systemd-container debootstrap openssh-client etcd-server etcd-client iproute2 nftables util-linux busybox-static \
	chromium
CLUSTER := $(PY) tests/cluster/harness/cluster.py
COLLECTIONS := $(CURDIR)/.cache/collections
PLAYBOOK := ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS) ANSIBLE_HOST_KEY_CHECKING=False $(VENV)/bin/ansible-playbook

cluster-deps:
	$(call apt_ensure,$(CLUSTER_APT_PACKAGES))

$(COLLECTIONS)/ansible_collections/overlay/flannel:
	mkdir -p $(COLLECTIONS)/ansible_collections/overlay
	ln -sfn $(CURDIR) $@

cluster-up: deps cluster-deps venv
	@if $(PY) -c 'import json, sys; sys.exit(json.load(open(sys.argv[1])).get("phase") != "up")' \
	    $(CLUSTER_STATE)/state.json 2>/dev/null; then \
	  echo "cluster in $(CLUSTER_STATE) is up"; \
	else \
	  $(CLUSTER) up --hosts $(CLUSTER_HOSTS) --state-dir $(CLUSTER_STATE) --prefix $(CLUSTER_PREFIX) \
	    --underlay $(CLUSTER_UNDERLAY); \
	fi

cluster-down:
	@if [ -f $(CLUSTER_STATE)/state.json ]; then $(CLUSTER) down --state-dir $(CLUSTER_STATE); else echo "no cluster in $(CLUSTER_STATE)"; fi

cluster-demo: cluster-up $(COLLECTIONS)/ansible_collections/overlay/flannel
	time $(PLAYBOOK) -i $(CLUSTER_STATE)/inventory.ini playbooks/site.yml
	$(PLAYBOOK) -i $(CLUSTER_STATE)/inventory.ini playbooks/examples/overlay_ping.yml

test-cluster: deps cluster-deps venv venv-min controller
	OVERLAY_FLANNEL_MIN_VENV=$(VENV_MIN) $(PY) -m pytest tests/cluster

# --- release checks and the docs site (see CONTRIBUTING.md) -------------------
#   make release-lint    the changelog fragments, and the modules', filter's and
#                        roles' docs as docs.ansible.com renders them (seconds)
#   make docs            the HTML docs site in build/docs/html, with antsibull-docs
#                        and Sphinx from requirements/docs.txt in their own
#                        virtualenv (DOCS_VENV), so make test does not pay for them
DOCS_VENV ?= $(CURDIR)/build/docs-venv
DOCS_STAMP := $(DOCS_VENV)/.installed-$(shell sha1sum requirements/docs.txt | cut -c1-12)

release-lint: venv $(COLLECTIONS)/ansible_collections/overlay/flannel
	$(VENV)/bin/antsibull-changelog lint
	PATH=$(VENV)/bin:$$PATH ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS) $(VENV)/bin/antsibull-docs \
	  lint-collection-docs --plugin-docs $(COLLECTIONS)/ansible_collections/overlay/flannel

$(DOCS_STAMP): requirements/docs.txt
	$(call apt_ensure,python3-venv)
	@test -x $(DOCS_VENV)/bin/python || $(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install -q --upgrade pip
	$(DOCS_VENV)/bin/python -m pip install -q -r requirements/docs.txt
	@rm -f $(DOCS_VENV)/.installed-*
	@touch $@

docs: $(DOCS_STAMP) $(COLLECTIONS)/ansible_collections/overlay/flannel
	ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS) tools/build_docs.sh $(DOCS_VENV) $(CURDIR)/build/docs

# --- air-gapped controllers ----------------------------------------------------
# The forwarder's wheelhouse for air-gapped controllers (playbooks/wheelhouse.yml):
#   make wheelhouse WHEELHOUSE=/srv/flannel-wheels [TARGETS="3.11-x86_64-2.36 3.13-aarch64-2.41"]
WHEELHOUSE ?=
TARGETS ?=
wheelhouse: venv $(COLLECTIONS)/ansible_collections/overlay/flannel
	@test -n "$(WHEELHOUSE)" || { echo "make wheelhouse WHEELHOUSE=<directory> [TARGETS=\"<python>-<machine>-<glibc> ...\"]"; exit 2; }
	ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS) $(VENV)/bin/ansible-playbook playbooks/wheelhouse.yml \
	  -e flannel_forwarder_wheelhouse=$(abspath $(WHEELHOUSE)) $(if $(TARGETS),-e 'flannel_wheelhouse_targets="$(strip $(TARGETS))"')
