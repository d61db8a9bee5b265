# The two entry points of README's quick start. Both install what is missing first.
.PHONY: run test setup clean

setup:
	@scripts/setup.sh

run: setup
	.venv/bin/gwlb-conformance run

test: setup
	.venv/bin/python -m pytest

clean:
	rm -rf .venv reports/run-*
