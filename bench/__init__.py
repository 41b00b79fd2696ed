"""Benchmarks: build labs in network namespaces and print figures beside the measured floors."""
