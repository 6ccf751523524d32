# Two commands for a user: `make demo` (full drill on the embedded lab) and `make test`.
# Both install what they need: a Python 3.11 venv from the lock, and for the tests the
# Debian packages of the real libvirt/QEMU lab.

PYTHON ?= python3.11
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
# Debian packages the tests run for real: the libvirt/QEMU lab (QEMU, libvirtd, a busybox initramfs guest), the metric
# stores the dashboards are queried on, the browser that renders reports and the Prefect UI, PostgreSQL
# for the production Prefect server variant, the tools an auditor verifies a bundle with, and nftables and haproxy
# for the probe's switchover tests (one-way drops, resets, a gateway in between), and a one-node Ceph cluster
# whose RADOS Gateway is the S3 store with Object Lock that the WORM evidence archive is tested on.
TEST_DEBS = qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev \
            busybox-static cpio tini pkg-config gcc iproute2 \
            prometheus prometheus-pushgateway victoria-metrics \
            chromium chromium-driver fonts-wqy-zenhei postgresql openssl jq nftables haproxy \
            ceph-mon ceph-osd radosgw ceph-common

.PHONY: venv sysdeps demo test lint-imports lock clean

$(STAMP): pyproject.toml lab/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade 'pip>=24'
	$(BIN)/pip install -q -c constraints.txt -e '.[test]' -e ./lab
	touch $@

venv: $(STAMP)

# Installs the test suite's system packages once; a no-op when they are present.
sysdeps:
	@missing=$$(for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing: $$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@$(BIN)/python -c 'import libvirt' 2>/dev/null || $(BIN)/pip install -q -c constraints.txt -e '.[test,libvirt]'

demo: venv
	$(BIN)/livedrill demo

# Two test processes (one module each at a time), then the timing-sensitive modules alone: 14 min serial, about
# 10 this way on a 2-core machine.
test: venv sysdeps
	$(BIN)/lint-imports
	$(BIN)/pytest -n 2 --dist loadfile -m "not serial"
	$(BIN)/pytest -m serial

lock:
	$(BIN)/pip freeze --exclude-editable | { echo '# Lock: every package version the venv resolves to, used as pip constraints by the Makefile.'; echo '# Regenerate with: make lock'; cat; } > constraints.txt

clean:
	rm -rf $(VENV)
