package publish

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports the NATS side's state at scrape time, so the publish path pays nothing:
// readiness, the connection's state and reconnects, and the publisher's group commit counts.
type Collector struct {
	nc         *nats.Conn
	p          *Publisher
	ready      *prometheus.Desc
	connected  *prometheus.Desc
	reconnects *prometheus.Desc
	groups     *prometheus.Desc
	events     *prometheus.Desc
}

// NewCollector returns a collector of nc's connection state and p's groups.
func NewCollector(nc *nats.Conn, p *Publisher) *Collector {
	desc := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &Collector{
		nc: nc,
		p:  p,
		ready: desc("ayrbridge_ready",
			"1 when the bridge can take webhooks (what /readyz answers 200 for): NATS connected and the stream there."),
		connected: desc("ayrbridge_nats_connected",
			"1 when the NATS connection is up, 0 while it is down or reconnecting."),
		reconnects: desc("ayrbridge_nats_reconnects_total", "Times the NATS connection was re-established."),
		groups: desc("ayrbridge_publish_groups_total",
			"Groups of webhooks sent to JetStream together (group commit)."),
		events: desc("ayrbridge_publish_group_events_total",
			"Events sent in those groups; divided by the groups, the mean group size."),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.ready, c.connected, c.reconnects, c.groups, c.events} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	up := 0.0
	if c.nc.IsConnected() {
		up = 1
	}
	// Bounded well inside a scrape timeout; a disconnected client answers at once.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	ready := 0.0
	if c.p.Ready(ctx) == nil {
		ready = 1
	}
	cancel()
	s := c.p.Stats()
	ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, ready)
	ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(c.reconnects, prometheus.CounterValue, float64(c.nc.Stats().Reconnects))
	ch <- prometheus.MustNewConstMetric(c.groups, prometheus.CounterValue, float64(s.Groups))
	ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(s.Events))
}
