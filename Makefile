# Thin wrappers around ./dev.sh, which works without make on a fresh machine.
.PHONY: run test bench lint fmt golden
run:
	./dev.sh run $(ARGS)
test:
	./dev.sh test $(ARGS)
bench:
	./dev.sh bench $(ARGS)
lint:
	.venv/bin/ruff check exporter tests bench && .venv/bin/ruff format --check exporter tests bench && .venv/bin/mypy
fmt:
	.venv/bin/ruff format exporter tests bench && .venv/bin/ruff check --fix exporter tests bench
golden:
	NETPATH_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py
