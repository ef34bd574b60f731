package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/ayrbridge/ayrbridge/schema"
)

// ErrInvalidJob means a Job cannot run as given.
var ErrInvalidJob = errors.New("invalid replay job")

// StoredIDs calls fn with the id of every event the stream stored at or after since and
// returns how many messages it read; publish.StoredIDs with its stream bound satisfies it.
type StoredIDs func(ctx context.Context, since time.Time, fn func(id string)) (int, error)

// Sink publishes replayed events; *publish.Publisher satisfies it.
type Sink interface {
	// PublishAsync sends ev and calls done exactly once with its outcome, unless it returns
	// an error. It may block while too many events await acknowledgement.
	PublishAsync(ctx context.Context, ev schema.Event, done func(error)) error
	// Flush waits until every message published so far has its outcome.
	Flush(ctx context.Context) error
}

// Job says what to replay.
type Job struct {
	Profiles []Profile // at least one
	Since    time.Time // only events created at or after Since...
	Until    time.Time // ...and at or before Until
	Actions  []string  // only these actions; all when empty
	DryRun   bool      // count the gaps, publish nothing
}

// Counts is the outcome for one action, or for all of them.
type Counts struct {
	InHistory     int64 `json:"in_history"`     // payloads created within the window
	InStream      int64 `json:"in_stream"`      // of those, already in the stream
	Missing       int64 `json:"missing"`        // of those, not in the stream: published, or to be with dry_run
	NewlyMissing  int64 `json:"newly_missing"`  // of the missing, those no earlier pass of this process found missing
	Published     int64 `json:"published"`      // stored by this run
	Failed        int64 `json:"failed"`         // invalid, or published but not confirmed stored
	Invalid       int64 `json:"invalid"`        // of the failed, payloads the bridge would refuse too
	OutsideWindow int64 `json:"outside_window"` // returned by the history but created outside the window, or undated
}

func (c *Counts) add(o Counts) {
	c.InHistory += o.InHistory
	c.InStream += o.InStream
	c.Missing += o.Missing
	c.NewlyMissing += o.NewlyMissing
	c.Published += o.Published
	c.Failed += o.Failed
	c.Invalid += o.Invalid
	c.OutsideWindow += o.OutsideWindow
}

// Summary is what a run did.
type Summary struct {
	Since       time.Time         `json:"since"`
	Until       time.Time         `json:"until"`
	DryRun      bool              `json:"dry_run"`
	Profiles    int               `json:"profiles"`
	StoredIDs   int               `json:"stored_ids"` // messages read from the stream to learn what it holds
	Actions     map[string]Counts `json:"actions"`
	Total       Counts            `json:"total"`
	Errors      []string          `json:"errors"`
	Refused     []string          `json:"refused_profiles"` // labels of the profiles Ayrshare refused (401/403)
	Interrupted bool              `json:"interrupted"`
	Seconds     float64           `json:"seconds"`
}

// Progress is a snapshot of a running replay.
type Progress struct {
	Phase     string // "stream" while reading stored ids, "history" while replaying, "flush", "done"
	StoredIDs int64
	Read      int64 // payloads read from the history, in or outside the window
	InStream  int64
	Missing   int64
	Published int64
	Failed    int64
}

// counter names one of the counts a run keeps.
type counter int

const (
	cInHistory counter = iota
	cInStream
	cMissing
	cNewlyMissing
	cPublished
	cPubFailed // published, not confirmed
	cInvalid
	cOutside
	nCounters
)

// counters are updated by the replay goroutine and by the sink's callbacks.
type counters [nCounters]atomic.Int64

func (c *counters) snapshot() Counts {
	pubFailed, invalid := c[cPubFailed].Load(), c[cInvalid].Load()
	return Counts{
		InHistory: c[cInHistory].Load(), InStream: c[cInStream].Load(), Missing: c[cMissing].Load(),
		NewlyMissing: c[cNewlyMissing].Load(), Published: c[cPublished].Load(), Failed: pubFailed + invalid, Invalid: invalid,
		OutsideWindow: c[cOutside].Load(),
	}
}

func (c *counters) reset() {
	for i := range c {
		c[i].Store(0)
	}
}

// Replayer fills the gaps a stream has against Ayrshare's history.
type Replayer struct {
	history *Client
	stored  StoredIDs
	sink    Sink
	log     zerolog.Logger
	margin  time.Duration
	grace   time.Duration
	maxItem int
	metrics *Metrics

	// unresolved holds the ids (and creation times) of missing events not yet known stored,
	// so that a later pass that finds one missing again does not count it as newly lost. Only
	// RunEvery keeps it (track): a single run has no later pass, and a dry run over a large gap
	// would hold every id.
	mu         sync.Mutex
	track      bool
	unresolved map[string]time.Time

	phase  atomic.Value // string
	ids    atomic.Int64
	read   atomic.Int64
	totals counters
}

// Option configures a Replayer.
type Option func(*Replayer) error

// WithLogger sets the logger (default: none).
func WithLogger(l zerolog.Logger) Option {
	return func(r *Replayer) error { r.log = l; return nil }
}

// WithStreamMargin sets how long before Since the stream is read to learn what it holds
// (default 1h). An event is stored after Ayrshare created it, so reading from Since covers every
// stored copy of an event in the window; the margin absorbs clock skew between Ayrshare and NATS.
func WithStreamMargin(d time.Duration) Option {
	return func(r *Replayer) error {
		r.margin = d
		return invalid(d >= 0, "stream margin %s must not be negative", d)
	}
}

// WithFlushGrace bounds the wait for outstanding acknowledgements once the run is interrupted
// (default 10s); what is still unconfirmed then counts as failed.
func WithFlushGrace(d time.Duration) Option {
	return func(r *Replayer) error { r.grace = d; return invalid(d > 0, "flush grace %s must be positive", d) }
}

// WithMaxItemBytes bounds one history payload (default DefaultMaxItemBytes).
func WithMaxItemBytes(n int) Option {
	return func(r *Replayer) error { r.maxItem = n; return invalid(n > 0, "max item bytes %d must be positive", n) }
}

// WithMetrics records each run in m (default: none).
func WithMetrics(m *Metrics) Option {
	return func(r *Replayer) error { r.metrics = m; return nil }
}

// New returns a Replayer reading history, learning the stream's content from stored and
// publishing to sink (which may be nil when every job is a dry run).
func New(history *Client, stored StoredIDs, sink Sink, opts ...Option) (*Replayer, error) {
	if history == nil || stored == nil {
		return nil, errors.New("replay: nil history client or stored-ids reader")
	}
	r := &Replayer{history: history, stored: stored, sink: sink, log: zerolog.Nop(),
		margin: time.Hour, grace: 10 * time.Second, maxItem: DefaultMaxItemBytes, unresolved: map[string]time.Time{}}
	for _, opt := range opts {
		if err := opt(r); err != nil {
			return nil, err
		}
	}
	r.phase.Store("start")
	return r, nil
}

// Progress returns how far the current run is; it is safe to call from any goroutine.
func (r *Replayer) Progress() Progress {
	t := r.totals.snapshot()
	return Progress{
		Phase: r.phase.Load().(string), StoredIDs: r.ids.Load(), Read: r.read.Load(),
		InStream: t.InStream, Missing: t.Missing, Published: t.Published, Failed: t.Failed,
	}
}

// Run replays job: it learns which event ids the stream holds from Since (minus the margin)
// on, then reads each profile's history and publishes every event of the window the stream
// lacks, converted by schema.NewEvent and marked replayed. A profile whose history fails is
// reported in the summary and the error, and the others still run; a sink that gives up stops
// the run. When ctx ends the run stops, waits a short grace for acknowledgements, and returns
// the summary so far with Interrupted set. Events that could not be published count as failed
// without making the error non-nil. Run must not be called concurrently.
func (r *Replayer) Run(ctx context.Context, job Job) (Summary, error) {
	if err := r.check(job); err != nil {
		return Summary{}, err
	}
	sum, err := r.run(ctx, job)
	r.metrics.pass(sum, err == nil && sum.Total.Failed == 0, time.Now())
	return sum, err
}

func (r *Replayer) run(ctx context.Context, job Job) (Summary, error) {
	began := time.Now()
	r.forget(job.Since)
	r.totals.reset()
	r.ids.Store(0)
	r.read.Store(0)
	sum := Summary{Since: job.Since, Until: job.Until, DryRun: job.DryRun, Profiles: len(job.Profiles),
		Actions: map[string]Counts{}, Errors: []string{}, Refused: []string{}}
	perAction := map[string]*counters{}
	defer r.phase.Store("done")

	r.phase.Store("stream")
	readFrom := time.Now()
	ids := newIDSet()
	n, err := r.stored(ctx, job.Since.Add(-r.margin), func(id string) {
		ids.add(ids.key(id))
		r.ids.Add(1)
	})
	sum.StoredIDs = n
	if err != nil {
		err = fmt.Errorf("learn what the stream holds: %w", err)
		sum.Errors = append(sum.Errors, err.Error())
		sum.Interrupted = ctx.Err() != nil
		return sum, err
	}
	r.log.Info().Int("messages", n).Int("ids", ids.len()).Time("from", job.Since.Add(-r.margin)).
		Dur("took", time.Since(readFrom)).Msg("stream read")

	r.phase.Store("history")
	var errs []error
	var requests []string // one request per action asked for, or one for all
	for _, a := range job.Actions {
		if !slices.Contains(requests, a) {
			requests = append(requests, a)
		}
	}
	if len(requests) == 0 {
		requests = []string{""}
	}
profiles:
	for _, p := range job.Profiles {
		for _, action := range requests {
			err := r.replay(ctx, job, p, action, ids, perAction)
			if err == nil {
				continue
			}
			errs = append(errs, err)
			if ctx.Err() != nil || errors.Is(err, errSinkGaveUp) {
				break profiles
			}
			r.log.Error().Err(err).Str("profile", p.Label).Str("action", action).Msg("profile history failed")
			if errors.Is(err, ErrUnauthorized) {
				sum.Refused = append(sum.Refused, p.Label)
				break // the same key will be refused for every action
			}
		}
	}

	r.phase.Store("flush")
	if r.sink != nil && !job.DryRun {
		// Outcomes come within the sink's own timeouts; only an interruption, before or during
		// the wait, cuts it short, after a grace period.
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		stop := context.AfterFunc(ctx, func() { time.AfterFunc(r.grace, cancel) })
		if err := r.sink.Flush(fctx); err != nil {
			errs = append(errs, fmt.Errorf("wait for acknowledgements: %w", err))
		}
		stop()
		cancel()
	}

	for action, c := range perAction {
		counts := c.snapshot()
		// Whatever was sent but not confirmed when the flush gave up counts as failed.
		if lost := counts.Missing - counts.Published - (counts.Failed - counts.Invalid); lost > 0 && !job.DryRun {
			counts.Failed += lost
		}
		sum.Actions[action] = counts
		sum.Total.add(counts)
	}
	sum.Interrupted = ctx.Err() != nil
	if sum.Interrupted && len(errs) == 0 { // stopped between two requests
		errs = append(errs, fmt.Errorf("replay interrupted: %w", ctx.Err()))
	}
	for _, e := range errs {
		sum.Errors = append(sum.Errors, e.Error())
	}
	sum.Seconds = time.Since(began).Seconds()
	return sum, errors.Join(errs...)
}

func (r *Replayer) check(job Job) error {
	var errs []error
	if len(job.Profiles) == 0 {
		errs = append(errs, errors.New("no profile"))
	}
	if job.Since.IsZero() || job.Until.IsZero() || !job.Since.Before(job.Until) {
		errs = append(errs, fmt.Errorf("window %s..%s: want since before until", job.Since.Format(time.RFC3339), job.Until.Format(time.RFC3339)))
	}
	if r.sink == nil && !job.DryRun {
		errs = append(errs, errors.New("no sink to publish to"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidJob, err)
	}
	return nil
}

// errSinkGaveUp marks a publish the sink refused: the run cannot go on.
var errSinkGaveUp = errors.New("publishing stopped")

// replay reads one history response and publishes the events of the window the stream lacks.
func (r *Replayer) replay(ctx context.Context, job Job, p Profile, action string, ids *idSet, perAction map[string]*counters) error {
	rc, err := r.history.History(ctx, p, action)
	if err != nil {
		return err
	}
	defer rc.Close()
	dec := NewDecoder(rc, r.maxItem)
	var (
		cur     *counters // the counters of curName, looked up once per action
		curName string
		invalid int
	)
	for {
		item, err := dec.Next()
		if err != nil {
			if skipped := dec.Skipped(); len(skipped) > 0 {
				r.log.Warn().Str("profile", p.Label).Strs("members", skipped).Msg("history members that are not arrays were skipped")
			}
			if err == io.EOF {
				return nil
			}
			return fmt.Errorf("history of %s: %w", p.Label, err)
		}
		r.read.Add(1)
		if cur == nil || item.Action != curName {
			if action != "" && item.Action != action {
				cur, curName = nil, ""
				continue // not the action asked for: the request for that action counts it
			}
			curName = item.Action
			if cur = perAction[curName]; cur == nil {
				cur = &counters{}
				perAction[curName] = cur
			}
		}
		// The quick look first: the id and created cost one scan, and an event the stream
		// holds needs no conversion.
		id, createdRaw, err := schema.Identify(item.Data)
		if err != nil {
			r.invalid(p, item, err, cur, &invalid)
			continue
		}
		created, err := time.Parse(time.RFC3339Nano, createdRaw)
		if err != nil || created.Before(job.Since) || created.After(job.Until) {
			r.count(cur, cOutside)
			continue
		}
		key := ids.key(id)
		if ids.has(key) {
			r.count(cur, cInHistory)
			r.count(cur, cInStream)
			continue
		}
		ev, err := schema.NewEvent(item.Data, schema.Meta{Replayed: true})
		if err != nil {
			r.invalid(p, item, err, cur, &invalid)
			continue
		}
		ids.add(key) // a second copy later in the history is then in the stream
		r.count(cur, cInHistory)
		r.count(cur, cMissing)
		if r.firstMiss(id, created) {
			r.count(cur, cNewlyMissing)
		}
		if job.DryRun {
			continue
		}
		c := cur
		err = r.sink.PublishAsync(ctx, ev, func(err error) {
			if err != nil {
				r.count(c, cPubFailed)
				r.log.Debug().Err(err).Str("id", id).Msg("replayed event not stored")
				return
			}
			r.resolved(id)
			r.count(c, cPublished)
		})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: %w", errSinkGaveUp, err)
		}
	}
}

// firstMiss reports whether no earlier pass found the event id missing, and remembers it
// until it is stored or leaves the window.
func (r *Replayer) firstMiss(id string, created time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.track {
		return true
	}
	if _, seen := r.unresolved[id]; seen {
		return false
	}
	r.unresolved[id] = created
	return true
}

// resolved forgets a missing event once it is stored: a pass reads it from the stream then.
func (r *Replayer) resolved(id string) {
	r.mu.Lock()
	delete(r.unresolved, id)
	r.mu.Unlock()
}

// forget drops the missing events created before since: no pass looks at them again.
func (r *Replayer) forget(since time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, created := range r.unresolved {
		if created.Before(since) {
			delete(r.unresolved, id)
		}
	}
}

// invalid counts a payload the bridge would have refused too, so it cannot be in the stream,
// and logs the first few of a response.
func (r *Replayer) invalid(p Profile, item Item, err error, c *counters, seen *int) {
	if *seen++; *seen <= 10 {
		r.log.Warn().Err(err).Str("profile", p.Label).Str("action", item.Action).Msg("history payload is not a valid webhook")
	}
	r.count(c, cInHistory)
	r.count(c, cInvalid)
}

// count adds one to counter k of an action and of the totals.
func (r *Replayer) count(c *counters, k counter) {
	c[k].Add(1)
	r.totals[k].Add(1)
}
