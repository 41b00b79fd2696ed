# Thin wrappers around ./dev.sh, which works without make on a fresh machine.
.PHONY: run test bench image dist lint fmt golden dashboards pictures
run:
	./dev.sh run $(ARGS)
test:
	./dev.sh test $(ARGS)
bench:
	./dev.sh bench $(ARGS)
image:
	./dev.sh image
dist:
	.venv/bin/python -m build --outdir dist .
lint:
	.venv/bin/ruff check exporter tests bench grafana && .venv/bin/ruff format --check exporter tests bench grafana && .venv/bin/mypy
fmt:
	.venv/bin/ruff format exporter tests bench grafana && .venv/bin/ruff check --fix exporter tests bench grafana
golden:
	NETPATH_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py tests/test_explain.py tests/test_pathview.py
dashboards:
	.venv/bin/python -m grafana.build
pictures:
	NETPATH_UPDATE_DASHBOARD_PNGS=1 .venv/bin/python -m pytest tests/test_prometheus_e2e.py
