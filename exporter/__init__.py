"""netpath-exporter: the path of container traffic, as Prometheus metrics."""

__version__ = "0.2.0"
