# Prometheus for the compose stack where its upstream image (prom/prometheus) cannot
# be pulled: the prometheus and promtool binaries of Debian's package on the same
# minimal Debian base as the exporter's image. ./dev.sh image prometheus unpacks the
# package into build/prometheus-root/ and builds this with no network.
#
# Debian's web UI needs a dozen libjs-* packages and is left out: the HTTP API, the
# scrapes and the rule evaluation are all there.
ARG BASE=netpath-exporter-base:bookworm
FROM ${BASE}
COPY build/prometheus-root/ /
RUN mkdir -p /prometheus && chown 65534:65534 /prometheus
USER 65534:65534
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
