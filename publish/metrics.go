package publish

import (
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// ConnCollector exports a connection's state at scrape time, so the publish path pays nothing.
type ConnCollector struct {
	nc         *nats.Conn
	connected  *prometheus.Desc
	reconnects *prometheus.Desc
}

// NewConnCollector returns a collector of nc's connection state and reconnect count.
func NewConnCollector(nc *nats.Conn) *ConnCollector {
	return &ConnCollector{
		nc: nc,
		connected: prometheus.NewDesc("ayrbridge_nats_connected",
			"1 when the NATS connection is up, 0 while it is down or reconnecting.", nil, nil),
		reconnects: prometheus.NewDesc("ayrbridge_nats_reconnects_total",
			"Times the NATS connection was re-established.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *ConnCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.connected
	ch <- c.reconnects
}

// Collect implements prometheus.Collector.
func (c *ConnCollector) Collect(ch chan<- prometheus.Metric) {
	up := 0.0
	if c.nc.IsConnected() {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(c.reconnects, prometheus.CounterValue, float64(c.nc.Stats().Reconnects))
}
