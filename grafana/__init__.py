"""netpath-exporter's Grafana dashboards, written as code with grafana-foundation-sdk.

``python -m grafana.build`` regenerates ``grafana/dashboards/*.json`` from this
package. This package is the repository's ``grafana/`` folder; the SDK itself is
``grafana_foundation_sdk``, so the two names never clash.
"""
