package replay

import (
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ayrbridge/ayrbridge/schema"
)

// otherAction labels every action Ayrshare has not documented, so a history cannot grow the
// label set without bound.
const otherAction = "other"

// codeError labels a history request that got no HTTP response (network error, timeout).
const codeError = "error"

// Metrics counts what the replay does, in a registry the caller owns. Profiles are no label:
// there may be thousands; the logs name them.
type Metrics struct {
	missing     *prometheus.CounterVec
	published   *prometheus.CounterVec
	failed      *prometheus.CounterVec
	passes      *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	duration    prometheus.Histogram
	requests    *prometheus.CounterVec
	profiles    prometheus.Gauge
	stopped     prometheus.Gauge
	interval    prometheus.Gauge
	known       map[string]bool // the documented actions, labelled by name
}

// LastSuccessMetric is the gauge a one-shot run leaves out of a failed push, so that the
// Pushgateway keeps the time of the last run that succeeded.
const LastSuccessMetric = "ayrbridge_replay_last_success_timestamp_seconds"

// NewMetrics creates the replay metrics and registers them with reg. started is the process
// start, what the last-success gauge holds until a pass succeeds, so that a replay that never
// succeeds turns stale three intervals after it started.
func NewMetrics(reg prometheus.Registerer, started time.Time) (*Metrics, error) {
	m := &Metrics{
		missing: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ayrbridge_replay_missing_events_total",
			Help: "History events a pass found missing from the stream, by action: events the live path lost. Each is counted once, however many passes see it missing.",
		}, []string{"action"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ayrbridge_replay_published_events_total",
			Help: "Missing events the replay stored in the stream, by action.",
		}, []string{"action"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ayrbridge_replay_failed_events_total",
			Help: "Missing events the replay could not store (not acknowledged by JetStream), by action; a later pass tries again.",
		}, []string{"action"}),
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ayrbridge_replay_passes_total",
			Help: "Replay passes finished, by result: ok, or error (a history or NATS failure, events not stored, or an interrupted pass).",
		}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: LastSuccessMetric,
			Help: "Unix time at which the last pass without error finished; the process start until one has.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ayrbridge_replay_pass_duration_seconds",
			Help:    "How long a pass took, from reading the stream to the last acknowledgement.",
			Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600},
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ayrbridge_replay_history_requests_total",
			Help: "Requests to Ayrshare's webhook history, retries included, by HTTP status code, or \"error\" when no response came.",
		}, []string{"code"}),
		profiles: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ayrbridge_replay_profiles",
			Help: "Profiles whose history the replay reads.",
		}),
		stopped: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ayrbridge_replay_profiles_stopped",
			Help: "Profiles the replay stopped reading because Ayrshare refused their key (401/403); the logs name them.",
		}),
		interval: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ayrbridge_replay_interval_seconds",
			Help: "Time between two passes (--every); 0 for a one-shot run.",
		}),
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.missing, m.published, m.failed, m.passes, m.lastSuccess,
		m.duration, m.requests, m.profiles, m.stopped, m.interval} {
		errs = append(errs, reg.Register(c))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// Every series an alert reads exists from the start, so a rule never waits on a missing one.
	m.known = map[string]bool{}
	for _, a := range schema.Actions() {
		m.known[a] = true
	}
	for _, a := range append(schema.Actions(), otherAction) {
		m.missing.WithLabelValues(a)
		m.published.WithLabelValues(a)
		m.failed.WithLabelValues(a)
	}
	for _, r := range []string{resultOK, resultError} {
		m.passes.WithLabelValues(r)
	}
	for _, c := range []string{"200", "401", "403", "429", "500", "502", "503", "504", codeError} {
		m.requests.WithLabelValues(c)
	}
	m.lastSuccess.Set(float64(started.UnixNano()) / 1e9)
	return m, nil
}

// Pass results.
const (
	resultOK    = "ok"
	resultError = "error"
)

// SetSchedule records how many profiles are read and how often (0 for a one-shot run).
func (m *Metrics) SetSchedule(profiles int, every time.Duration) {
	if m == nil {
		return
	}
	m.profiles.Set(float64(profiles))
	m.interval.Set(every.Seconds())
}

// setStopped records how many profiles were stopped for refused credentials.
func (m *Metrics) setStopped(n int) {
	if m != nil {
		m.stopped.Set(float64(n))
	}
}

// request counts one history request by its status code, 0 meaning no response.
func (m *Metrics) request(code int) {
	if m == nil {
		return
	}
	label := codeError
	if code > 0 {
		label = strconv.Itoa(code)
	}
	m.requests.WithLabelValues(label).Inc()
}

// pass records the outcome of one pass.
func (m *Metrics) pass(sum Summary, ok bool, finished time.Time) {
	if m == nil {
		return
	}
	for action, c := range sum.Actions {
		if !m.known[action] {
			action = otherAction
		}
		m.missing.WithLabelValues(action).Add(float64(c.NewlyMissing))
		m.published.WithLabelValues(action).Add(float64(c.Published))
		m.failed.WithLabelValues(action).Add(float64(c.Failed - c.Invalid)) // an invalid payload never can be
	}
	m.duration.Observe(sum.Seconds)
	if !ok {
		m.passes.WithLabelValues(resultError).Inc()
		return
	}
	m.passes.WithLabelValues(resultOK).Inc()
	m.lastSuccess.Set(float64(finished.UnixNano()) / 1e9)
}
