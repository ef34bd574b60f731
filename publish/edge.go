package publish

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// ErrNotAttached means the hub stream does not source this edge (or has no duplicate window)
// and the edge was told not to change it; the error says what the operator should run.
var ErrNotAttached = errors.New("edge not attached to the hub")

// EdgeDomain is the JetStream domain, server name and prefix of the stream name of the edge
// with the given id.
func EdgeDomain(id string) string { return "ayr-edge-" + id }

// EdgeConfig is an edge's place in the hub topology.
type EdgeConfig struct {
	Stream    string       // the edge's own stream (the publisher's), in Domain
	Domain    string       // the edge's JetStream domain, ayr-edge-<id>
	HubDomain string       // the hub's JetStream domain
	Hub       StreamConfig // the hub stream, as the edge creates it when it is missing
	Budget    int64        // the edge stream's byte budget, exported for dashboards
	Attach    bool         // add this edge's source to the hub stream; false only checks
	Every     time.Duration
}

// hubConsumer is the durable consumer on the edge stream through which the hub sources it. The
// edge creates it and names it in its source, rather than letting the hub create one, because
// for a named durable the hub probes the consumer's heartbeats and resumes the moment the link
// is back, where for its own it backs off (up to two minutes) after an outage.
const hubConsumer = "AYRBRIDGE_HUB"

// leafLinks is what the edge reads from its embedded server: *server.Server has it.
type leafLinks interface{ NumLeafNodes() int }

// Edge keeps an edge attached to its hub (the hub stream lists the edge stream as a source with
// an explicit duplicate window) and exports the edge's backlog and link state at scrape time.
type Edge struct {
	cfg      EdgeConfig
	local    jetstream.JetStream
	hub      jetstream.JetStream
	links    leafLinks
	log      zerolog.Logger
	attached atomic.Bool
	checks   *prometheus.CounterVec
	descs    edgeDescs

	// Only the checking goroutine touches these: the hub consumer was set up (or found
	// impossible), and whether the source names it.
	consumerChecked, ownConsumer bool
}

type edgeDescs struct {
	msgs, bytes, budget, age, forwarded, consumers, connected, attached *prometheus.Desc
}

// NewEdge returns the edge side of nc (a connection to the edge's own server, whose leaf links
// links reports).
func NewEdge(nc *nats.Conn, links leafLinks, cfg EdgeConfig, log zerolog.Logger) (*Edge, error) {
	if cfg.Every <= 0 {
		return nil, fmt.Errorf("edge: check interval %s: want a positive duration", cfg.Every)
	}
	local, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	hub, err := jetstream.NewWithDomain(nc, cfg.HubDomain)
	if err != nil {
		return nil, fmt.Errorf("edge: hub domain %q: %w", cfg.HubDomain, err)
	}
	desc := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	e := &Edge{
		cfg: cfg, local: local, hub: hub, links: links,
		log: log.With().Str("component", "edge").Str("hub_stream", cfg.Hub.Name).Str("hub_domain", cfg.HubDomain).Logger(),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ayrbridge_edge_attach_checks_total",
			Help: "Checks of the hub stream's source list: ok (attached), changed (this edge added itself or the window), error (hub unreachable or not attached).",
		}, []string{"result"}),
		descs: edgeDescs{
			msgs:   desc("ayrbridge_edge_backlog_messages", "Events stored at the edge that the hub has not stored yet."),
			bytes:  desc("ayrbridge_edge_backlog_bytes", "Bytes of the edge's backlog."),
			budget: desc("ayrbridge_edge_budget_bytes", "The edge stream's byte budget (NATS_EDGE_MAX_BYTES); a full edge answers 503."),
			age: desc("ayrbridge_edge_oldest_backlog_age_seconds",
				"Age of the oldest event the hub has not stored yet; 0 with no backlog."),
			forwarded: desc("ayrbridge_edge_forwarded_messages_total",
				"Events the hub stored and the edge removed since its stream was created; flat while the backlog is not 0 means sourcing is stuck."),
			consumers: desc("ayrbridge_edge_sourcing_consumers",
				"Consumers on the edge stream; the hub's sourcing consumer is the only one, 0 means the hub never came for its events."),
			connected: desc("ayrbridge_edge_hub_connected", "1 while the leaf link to the hub is up."),
			attached: desc("ayrbridge_edge_hub_attached",
				"1 when the last check found this edge among the hub stream's sources, with a duplicate window."),
		},
	}
	for _, r := range []string{"ok", "changed", "error"} {
		e.checks.WithLabelValues(r)
	}
	return e, nil
}

// Source is this edge's stream as the hub stream lists it.
func (e *Edge) Source() *jetstream.StreamSource {
	src := &jetstream.StreamSource{Name: e.cfg.Stream, Domain: e.cfg.Domain}
	if e.ownConsumer || !e.consumerChecked {
		src.Consumer = &jetstream.StreamConsumerSource{Name: hubConsumer, DeliverSubject: e.deliverSubject()}
	}
	return src
}

// deliverSubject is where the hub consumer pushes; it crosses the leaf link, so it is unique
// per edge and outside the denied ayrshare.>.
func (e *Edge) deliverSubject() string { return "ayrbridge." + e.cfg.Domain + ".hub" }

// ensureConsumer creates the hub consumer on the edge stream: flow-controlled acks, so the
// work-queue stream deletes an event once the hub stored it.
func (e *Edge) ensureConsumer(ctx context.Context) error {
	_, err := e.local.CreateOrUpdatePushConsumer(ctx, e.cfg.Stream, jetstream.ConsumerConfig{
		Durable:        hubConsumer,
		Description:    "the hub sources this edge through it (ayrbridge)",
		DeliverSubject: e.deliverSubject(),
		AckPolicy:      jetstream.AckFlowControlPolicy,
		FlowControl:    true,
		IdleHeartbeat:  time.Second, // the only heartbeat flow-controlled acks accept
		MaxAckPending:  4096,
	})
	if err != nil {
		return fmt.Errorf("create the hub consumer on %s: %w", e.cfg.Stream, err)
	}
	return nil
}

// AttachCommand is the command an operator runs to attach the edge by hand: the nats CLI edits
// sources only from a JSON config, so it adds this edge's source (and the window, if missing) to
// the hub stream's current one.
func (e *Edge) AttachCommand() string {
	return fmt.Sprintf(`nats --js-domain %[1]s stream info %[2]s --json | jq '.config | .sources += [{"name":"%[3]s","external":{"api":"$JS.%[4]s.API"},"consumer":{"name":"%[6]s","deliver_subject":"%[7]s"}}] | .duplicate_window |= (if (. // 0) == 0 then %[5]d else . end)' > /tmp/%[2]s.json && nats --js-domain %[1]s stream edit %[2]s -f --config /tmp/%[2]s.json`,
		e.cfg.HubDomain, e.cfg.Hub.Name, e.cfg.Stream, e.cfg.Domain, e.cfg.Hub.DedupWindow.Nanoseconds(), hubConsumer, e.deliverSubject())
}

// Run checks the hub at once and then periodically until ctx ends: every few seconds until the
// edge is attached or after it changed the hub stream (another edge's update may have undone
// it), otherwise every cfg.Every. A hub that is away only delays the next check.
func (e *Edge) Run(ctx context.Context) {
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		changed, err := e.Check(cctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			e.checks.WithLabelValues("error").Inc()
			e.log.Warn().Err(err).Msg("edge not attached to the hub yet; events wait at the edge")
			wait = min(5*time.Second, e.cfg.Every)
		case changed:
			e.checks.WithLabelValues("changed").Inc()
			wait = min(3*time.Second, e.cfg.Every)
		default:
			e.checks.WithLabelValues("ok").Inc()
			wait = e.cfg.Every
		}
		// Edges that start together must not rewrite the hub stream in lockstep.
		wait += rand.N(wait/5 + time.Millisecond)
	}
}

// Check reads the hub stream once and, when the edge may, creates it or adds this edge's source
// and an explicit duplicate window; it never removes or changes another source. changed reports
// that it wrote the hub stream.
func (e *Edge) Check(ctx context.Context) (changed bool, err error) {
	changed, err = e.check(ctx)
	e.attached.Store(err == nil)
	return changed, err
}

func (e *Edge) check(ctx context.Context) (bool, error) {
	if !e.consumerChecked {
		err := e.ensureConsumer(ctx)
		if err != nil {
			s, serr := e.local.Stream(ctx, e.cfg.Stream)
			if serr != nil || s.CachedInfo().State.Consumers == 0 {
				return false, err
			}
			// A work-queue stream takes one unfiltered consumer, and the hub already made its own
			// (an edge attached by hand without the consumer): go on with that one.
			e.log.Warn().Err(err).Msg("the hub sources this edge through a consumer of its own; after an outage it may take up to 2 minutes to resume")
		}
		e.consumerChecked, e.ownConsumer = true, err == nil
	}
	s, err := e.hub.Stream(ctx, e.cfg.Hub.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if !e.cfg.Attach {
			return false, fmt.Errorf("%w: hub stream %s does not exist; create it (nats --js-domain %s stream add --config deploy/nats/stream.json), then run: %s",
				ErrNotAttached, e.cfg.Hub.Name, e.cfg.HubDomain, e.AttachCommand())
		}
		sc := e.cfg.Hub.jetstream()
		sc.Sources = []*jetstream.StreamSource{e.Source()}
		if _, err := e.hub.CreateStream(ctx, sc); err != nil {
			// Another edge may have created it first: the next check adds this one.
			return false, fmt.Errorf("create hub stream %s: %w", e.cfg.Hub.Name, err)
		}
		e.log.Info().Str("source", e.cfg.Stream).Msg("created the hub stream with this edge as its source")
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up hub stream %s: %w", e.cfg.Hub.Name, err)
	}
	have := s.CachedInfo().Config
	listed := slices.ContainsFunc(have.Sources, e.isSelf)
	windowed := have.Duplicates > 0
	if listed && windowed {
		return false, nil
	}
	if !e.cfg.Attach {
		var missing []string
		if !listed {
			missing = append(missing, "does not source "+e.cfg.Stream)
		}
		if !windowed {
			missing = append(missing, "has no duplicate window, so an event through two edges is stored twice")
		}
		return false, fmt.Errorf("%w: hub stream %s %s; run: %s", ErrNotAttached, e.cfg.Hub.Name, strings.Join(missing, " and "), e.AttachCommand())
	}
	upd := have
	if !listed {
		upd.Sources = append(slices.Clone(have.Sources), e.Source())
	}
	if !windowed {
		// Since nats-server 2.14 a stream with sources and no explicit window gets none.
		e.log.Error().Stringer("dedup_window", e.cfg.Hub.DedupWindow).
			Msg("hub stream had no duplicate window: events through two edges or the replay would be stored twice; setting it")
		upd.Duplicates = e.cfg.Hub.DedupWindow
	}
	if _, err := e.hub.UpdateStream(ctx, upd); err != nil {
		return false, fmt.Errorf("update hub stream %s: %w", e.cfg.Hub.Name, err)
	}
	if !listed {
		e.log.Info().Str("source", e.cfg.Stream).Int("sources", len(upd.Sources)).Msg("added this edge to the hub stream's sources")
	}
	return true, nil
}

// isSelf reports whether src is this edge's stream: by domain, or by the API prefix the server
// stores a domain as.
func (e *Edge) isSelf(src *jetstream.StreamSource) bool {
	if src == nil || src.Name != e.cfg.Stream {
		return false
	}
	if src.Domain == e.cfg.Domain {
		return true
	}
	return src.External != nil && src.External.APIPrefix == "$JS."+e.cfg.Domain+".API"
}

// Describe implements prometheus.Collector.
func (e *Edge) Describe(ch chan<- *prometheus.Desc) {
	d := e.descs
	for _, x := range []*prometheus.Desc{d.msgs, d.bytes, d.budget, d.age, d.forwarded, d.consumers, d.connected, d.attached} {
		ch <- x
	}
	e.checks.Describe(ch)
}

// Collect implements prometheus.Collector; the backlog comes from the edge stream's state.
func (e *Edge) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	gauge(e.descs.connected, boolFloat(e.links.NumLeafNodes() > 0))
	gauge(e.descs.attached, boolFloat(e.attached.Load()))
	gauge(e.descs.budget, float64(e.cfg.Budget))
	e.checks.Collect(ch)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := e.local.Stream(ctx, e.cfg.Stream)
	if err != nil {
		// The stream is not set up yet: no backlog figures rather than false zeros.
		e.log.Debug().Err(err).Msg("edge stream state unavailable for metrics")
		return
	}
	st := s.CachedInfo().State
	age := 0.0
	if st.Msgs > 0 {
		age = max(time.Since(st.FirstTime).Seconds(), 0)
	}
	gauge(e.descs.msgs, float64(st.Msgs))
	gauge(e.descs.bytes, float64(st.Bytes))
	gauge(e.descs.age, age)
	gauge(e.descs.consumers, float64(st.Consumers))
	ch <- prometheus.MustNewConstMetric(e.descs.forwarded, prometheus.CounterValue, float64(st.LastSeq-min(st.Msgs, st.LastSeq)))
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
