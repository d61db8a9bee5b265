# The two entry points of README's quick start. Both install what is missing first.
.PHONY: run test setup clean determinism

setup:
	@scripts/setup.sh

run: setup
	.venv/bin/gwlb-conformance run

test: setup
	.venv/bin/python -m pytest

# Not part of `make test`: 20 runs of the suite (about 20 minutes) must agree.
determinism: setup
	.venv/bin/python scripts/determinism.py --runs 20

clean:
	rm -rf .venv reports/run-*
