# The two commands of the README:  make demo  (the main job)  and  make test  (the whole suite).
# Both set the machine up first (tools/setup.sh: idempotent, fast when nothing changed), and run with
# DDS kept on this machine (tools/env.sh: random ROS_DOMAIN_ID, shared-memory Fast DDS profile).
SHELL := /bin/bash
.PHONY: setup test demo bench

setup:
	@tools/setup.sh

test: setup
	@. tools/env.sh && python -m pytest test $(PYTEST_ARGS)

demo: setup
	@. tools/env.sh && python -m occflow_ros.cli demo $(DEMO_ARGS)

# The benchmark harness: every question measured in one run, docs/benchmarks.md rewritten (README, "Benchmarks").
bench: setup
	@. tools/env.sh && python benchmarks/run_all.py $(BENCH_ARGS)
