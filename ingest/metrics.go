package ingest

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ayrbridge/ayrbridge/schema"
)

// Metrics counts what the webhook endpoint does, in a registry the caller owns.
type Metrics struct {
	requests     *prometheus.CounterVec
	events       *prometheus.CounterVec
	duplicates   prometheus.Counter
	sigFailures  *prometheus.CounterVec
	sigReasons   map[error]prometheus.Counter
	publish      prometheus.Histogram
	inFlight     prometheus.Gauge
	byCode       map[int]prometheus.Counter // children resolved once: label lookups hash on every call
	byAction     map[string]prometheus.Counter
	otherActions prometheus.Counter
}

// otherAction labels every action Ayrshare has not documented, so a sender cannot grow the
// label set without bound.
const otherAction = "other"

// NewMetrics creates the webhook metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ayrbridge_http_requests_total",
			Help: "Webhook requests answered, by HTTP status code.",
		}, []string{"code"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ayrbridge_events_total",
			Help: "Webhooks acknowledged by JetStream (duplicates included), by action; undocumented actions count as \"other\".",
		}, []string{"action"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ayrbridge_duplicates_total",
			Help: "Webhooks JetStream had already stored (redeliveries within the duplicate window).",
		}),
		sigFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ayrbridge_signature_failures_total",
			Help: "Webhooks refused for their signature, by reason: missing, mismatch (no secret of the webhook's profile made it) or stale (timestamp outside the skew).",
		}, []string{"reason"}),
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ayrbridge_publish_duration_seconds",
			Help:    "Time from publishing a webhook to JetStream's acknowledgement (or giving up).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ayrbridge_http_in_flight_requests",
			Help: "Webhook requests being handled now.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.events, m.duplicates, m.sigFailures, m.publish, m.inFlight} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.byCode = make(map[int]prometheus.Counter)
	for _, code := range []int{200, 400, 401, 404, 405, 408, 413, 415, 431, 500, 503} {
		m.byCode[code] = m.requests.WithLabelValues(strconv.Itoa(code))
	}
	m.sigReasons = map[error]prometheus.Counter{
		errNoSignature:  m.sigFailures.WithLabelValues("missing"),
		errBadSignature: m.sigFailures.WithLabelValues("mismatch"),
		errStale:        m.sigFailures.WithLabelValues("stale"),
	}
	m.byAction = make(map[string]prometheus.Counter)
	for _, a := range schema.Actions() {
		m.byAction[a] = m.events.WithLabelValues(a)
	}
	m.otherActions = m.events.WithLabelValues(otherAction)
	return m, nil
}

func (m *Metrics) begin() {
	if m != nil {
		m.inFlight.Inc()
	}
}

// done records one answered request. action is empty unless JetStream acknowledged the event.
func (m *Metrics) done(status int, action string, duplicate bool, publish time.Duration) {
	if m == nil {
		return
	}
	m.inFlight.Dec()
	m.answered(status)
	if publish > 0 {
		m.publish.Observe(publish.Seconds())
	}
	if action == "" {
		return
	}
	if c, ok := m.byAction[action]; ok {
		c.Inc()
	} else {
		m.otherActions.Inc()
	}
	if duplicate {
		m.duplicates.Inc()
	}
}

// signatureFailed counts a refused signature by its reason, one of the verifier's errors.
func (m *Metrics) signatureFailed(err error) {
	if m == nil {
		return
	}
	if c, ok := m.sigReasons[err]; ok {
		c.Inc()
	}
}

// answered counts a request answered without reaching the handler (refused while being read).
func (m *Metrics) answered(status int) {
	if m == nil {
		return
	}
	if c, ok := m.byCode[status]; ok {
		c.Inc()
		return
	}
	m.requests.WithLabelValues(strconv.Itoa(status)).Inc()
}
