package publish

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ayrbridge/ayrbridge/publish/cenats"
	"github.com/ayrbridge/ayrbridge/schema"
)

// ErrUnavailable means JetStream did not acknowledge in time or could not be reached; the
// message may or may not be stored, and publishing it again with the same id is safe.
var ErrUnavailable = errors.New("jetstream unavailable")

// ErrRefused means JetStream cannot store the message however often it is sent: no stream
// takes its subject, the stream that does is not the publisher's, or it is too large.
var ErrRefused = errors.New("jetstream refused the message")

// ErrStreamFull means the stream is at its byte budget and refuses new messages (an edge whose
// backlog waits for the hub). It comes wrapped with ErrUnavailable: sending again later, once
// the backlog drained, succeeds, and sending again now cannot.
var ErrStreamFull = errors.New("stream is full")

// ErrPublisherClosed is returned by PublishAsync after Close.
var ErrPublisherClosed = errors.New("publisher closed")

// errCodeStreamNotMatch is JetStream's answer to a Nats-Expected-Stream naming another stream
// than the one the subject goes to (nats-server's JSStreamNotMatchErr; nats.go names no constant).
const errCodeStreamNotMatch jetstream.ErrorCode = 10060

// errCodeStoreFailed is JetStream's answer when a stream could not store a message: with
// discard-new at its limits that is "maximum bytes exceeded" (JSStreamStoreFailedF).
const errCodeStoreFailed jetstream.ErrorCode = 10077

// Publisher stores events in one stream through nats.go's jetstream API, each with its event id
// as Nats-Msg-Id and the stream as Nats-Expected-Stream, so a message is stored once within the
// duplicate window and never in another stream. Publish waits for one event's acknowledgement;
// PublishAsync keeps a bounded window of acknowledgements in flight. Both send an unacknowledged
// message again, with the same id, and stop at once on errors that cannot heal (ErrRefused).
type Publisher struct {
	js        jetstream.JetStream
	stream    string
	expect    []string // the Nats-Expected-Stream header's value, shared by every message
	log       zerolog.Logger
	timeout   time.Duration
	attempt   time.Duration
	window    int
	ackWait   time.Duration
	maxStreak int
	// groups is Publish's group commit.
	groups groups
	// sync, when set, makes the server's writes durable before any caller hears of its ack.
	sync Syncer

	// The asynchronous side starts with the first PublishAsync, so a Publisher that only ever
	// publishes synchronously runs no goroutine and needs no Close.
	startAsync sync.Once
	slots      chan struct{}
	queue      chan pending
	finished   chan struct{}
	retries    sync.WaitGroup
	ctx        context.Context // ends when Close gives up waiting: no more waiting or retrying
	cancel     context.CancelFunc
	closed     bool
	streak     atomic.Int64
	// unavailable is set after maxStreak failures in a row.
	unavailable atomic.Bool
	// noStream is the last lookup's answer to "does no stream take this subject?": once
	// unavailable, failures are no longer looked up one by one and this answer stands for them.
	noStream atomic.Bool
}

type pending struct {
	msg  *nats.Msg
	id   string
	out  chan answer // the committer's answer to its first attempt
	err  error       // the publish failed before reaching a committer
	done func(error)
}

// Option configures a Publisher.
type Option func(*Publisher) error

// WithTimeout bounds a Publish whose ctx has no deadline, and the retries of one message of
// PublishAsync (default 5s).
func WithTimeout(d time.Duration) Option {
	return func(p *Publisher) error { p.timeout = d; return positive("publish timeout", d) }
}

// WithAttemptTimeout bounds one attempt (default: half the timeout, or of the caller's time
// left), so a request lost during a leader change is sent again, with the same id, before the
// caller gives up.
func WithAttemptTimeout(d time.Duration) Option {
	return func(p *Publisher) error { p.attempt = d; return positive("publish attempt timeout", d) }
}

// WithWindow sets how many PublishAsync messages may await acknowledgement at once (default 4096).
func WithWindow(n int) Option {
	return func(p *Publisher) error { p.window = n; return positive("publish window", n) }
}

// WithAckWait sets how long a PublishAsync acknowledgement may take before the message is sent
// again (default 5s).
func WithAckWait(d time.Duration) Option {
	return func(p *Publisher) error { p.ackWait = d; return positive("ack wait", d) }
}

// WithMaxFailures sets after how many failed PublishAsync messages in a row PublishAsync stops
// accepting messages and returns ErrUnavailable, and later failures are reported without
// retrying them (default 64). It keeps a run against a dead server from retrying every message.
func WithMaxFailures(n int) Option {
	return func(p *Publisher) error { p.maxStreak = n; return positive("max failures", n) }
}

// maxBatch is the most messages nats-server takes in one atomic batch (its default limit).
const maxBatch = 1000

// WithGroupSize bounds how many concurrent Publish calls share one trip to JetStream, that is
// one atomic batch (default 64, at most 1000, the server's limit on a batch).
func WithGroupSize(n int) Option {
	return func(p *Publisher) error {
		p.groups.size = n
		if n > maxBatch {
			return fmt.Errorf("group size %d above the %d messages of an atomic batch: %w", n, maxBatch, jetstream.ErrInvalidOption)
		}
		return positive("group size", n)
	}
}

// WithAtomicBatches sends each group of two or more messages as one atomic batch (default on),
// which lets a server that syncs every write flush once per group. Without it, or once the
// stream refused a batch as not enabled, every message is published on its own.
func WithAtomicBatches(on bool) Option {
	return func(p *Publisher) error { p.groups.batches.Store(on); return nil }
}

// WithMinBatch sets the smallest group sent as an atomic batch (default 16); smaller groups are
// sent one message at a time.
func WithMinBatch(n int) Option {
	return func(p *Publisher) error { p.groups.minBatch = n; return positive("min batch", n) }
}

// maxBatchesInFlight keeps a publisher's batches well under the 50 a stream takes at once, so
// that a few bridges and a replay can share one stream.
const maxBatchesInFlight = 16

// WithGroupsInFlight sets how many groups of Publish calls may await their acknowledgements at
// once (default 8, at most 16). Each committer forms its next group while its last is on its way, which
// makes groups grow under load; with one committer a call arriving then waits a whole round
// trip, which cost 12 % of the throughput at 8 connections (docs/performance.md).
func WithGroupsInFlight(n int) Option {
	return func(p *Publisher) error {
		p.groups.inFlight = n
		if n > maxBatchesInFlight {
			return fmt.Errorf("groups in flight %d above %d: %w", n, maxBatchesInFlight, jetstream.ErrInvalidOption)
		}
		return positive("groups in flight", n)
	}
}

// Syncer makes durable what the server wrote before Sync was called.
type Syncer interface {
	Sync(ctx context.Context) error
}

// WithSyncer has every acknowledgement wait for s.Sync before it is reported: for a server that
// acknowledges writes it has not fsynced (an embedded one run lazily, see StoreSync), so that
// one fsync round covers every event acknowledged before it.
func WithSyncer(s Syncer) Option {
	return func(p *Publisher) error {
		if s == nil {
			return errors.New("publish: nil Syncer")
		}
		p.sync = s
		return nil
	}
}

// WithLogger sets the logger (default: none).
func WithLogger(l zerolog.Logger) Option {
	return func(p *Publisher) error { p.log = l; return nil }
}

// positive is the check of the options above: the constructor fails on its error.
func positive[T int | time.Duration](what string, v T) error {
	if v <= 0 {
		return fmt.Errorf("%s %v: %w", what, v, jetstream.ErrInvalidOption)
	}
	return nil
}

// NewPublisher returns a Publisher for stream on nc, with its own JetStream context sized to
// the window. It never closes nc.
func NewPublisher(nc *nats.Conn, stream string, opts ...Option) (*Publisher, error) {
	if nc == nil {
		return nil, errors.New("publish: nil connection")
	}
	if stream == "" {
		return nil, errors.New("publish: empty stream name")
	}
	p := &Publisher{
		stream:    stream,
		expect:    []string{stream},
		log:       zerolog.Nop(),
		timeout:   5 * time.Second,
		window:    4096,
		ackWait:   5 * time.Second,
		maxStreak: 64,
		groups:    groups{size: 64, inFlight: 8, minBatch: defaultMinBatch},
	}
	p.groups.batches.Store(true)
	for _, opt := range opts {
		if err := opt(p); err != nil {
			return nil, err
		}
	}
	// The JetStream context's own limit sits above the window so it never stalls a publish;
	// its ack timeout makes every future resolve, so none stays pending forever.
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(p.window+1),
		jetstream.WithPublishAsyncTimeout(p.ackWait))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	p.js = js
	p.groups.queue = make(chan *request, p.groups.size*p.groups.inFlight)
	return p, nil
}

// Publish stores ev in the stream and returns once JetStream acknowledged it: stored now, or
// before (duplicate). Concurrent calls share trips to JetStream (a group commit), each answered
// from its own acknowledgement. Lost or unanswered attempts are sent again with the same id
// until ctx ends (or, without a deadline, the publisher's timeout passes); then the error wraps
// ErrUnavailable and the event may be stored anyway. An error wrapping ErrRefused means sending
// it again cannot help; after Close the error is ErrPublisherClosed. Publish is safe for
// concurrent use.
func (p *Publisher) Publish(ctx context.Context, ev schema.Event) (seq uint64, duplicate bool, err error) {
	ctx, cancel := p.bound(ctx)
	defer cancel()
	msg := p.message(ev)
	ack, err := p.first(ctx, msg)
	switch {
	case err == nil:
		return ack.Sequence, ack.Duplicate, nil
	case errors.Is(err, ErrPublisherClosed):
		return 0, false, err
	case full(err):
		return 0, false, fmt.Errorf("%w: %w: %w", ErrUnavailable, ErrStreamFull, err)
	case p.refused(ctx, msg, err):
		return 0, false, fmt.Errorf("%w: %w", ErrRefused, err)
	case ctx.Err() != nil:
		return 0, false, fmt.Errorf("%w: after 1 attempt: %w", ErrUnavailable, err)
	}
	p.log.Debug().Err(err).Int("attempt", 1).Str("id", ev.ID).Msg("publish attempt failed")
	if ack, err = p.publish(ctx, msg, ev.ID, 1); err != nil {
		return 0, false, err
	}
	return ack.Sequence, ack.Duplicate, nil
}

// message is ev as the stream gets it. Its headers are complete before it is sent, and no
// publish call is given options that would write them, because a committer may still be sending
// it when its caller, tired of waiting, sends it again.
func (p *Publisher) message(ev schema.Event) *nats.Msg {
	msg := cenats.Msg(ev)
	msg.Header[jetstream.ExpectedStreamHeader] = p.expect
	return msg
}

// bound gives ctx the publisher's timeout when it has no deadline of its own.
func (p *Publisher) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, p.timeout)
}

// attemptTimeout is how long one attempt may wait for its ack before the message is sent again.
func (p *Publisher) attemptTimeout(ctx context.Context) time.Duration {
	if p.attempt > 0 {
		return p.attempt
	}
	deadline, _ := ctx.Deadline()
	return max(time.Until(deadline)/2, time.Millisecond)
}

// first is a Publish call's first attempt, made through the group commit.
func (p *Publisher) first(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
	r := &request{ctx: ctx, deadline: time.Now().Add(p.attemptTimeout(ctx)), msg: msg, out: make(chan answer, 1)}
	if err := p.submit(ctx, r); err != nil {
		return nil, err
	}
	select {
	case a := <-r.out:
		return a.ack, a.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// publish sends msg, one attempt at a time, until JetStream acknowledges it, ctx (which has a
// deadline) ends or the error cannot heal. tries counts the attempts made before.
func (p *Publisher) publish(ctx context.Context, msg *nats.Msg, id string, tries int) (*jetstream.PubAck, error) {
	deadline, _ := ctx.Deadline()
	attempt := p.attemptTimeout(ctx)
	var last error
	ack, err := backoff.Retry(ctx, func() (*jetstream.PubAck, error) {
		tries++
		actx, cancel := context.WithTimeout(ctx, attempt)
		ack, err := p.js.PublishMsg(actx, msg)
		cancel()
		if err == nil {
			return ack, nil
		}
		last = err
		if full(err) {
			return nil, backoff.Permanent(fmt.Errorf("%w: %w: %w", ErrUnavailable, ErrStreamFull, err))
		}
		if p.refused(ctx, msg, err) {
			return nil, backoff.Permanent(fmt.Errorf("%w: %w", ErrRefused, err))
		}
		p.log.Debug().Err(err).Int("attempt", tries).Str("id", id).Msg("publish attempt failed")
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			// The attempt already waited its share: send again at once, with the same id.
			return nil, backoff.RetryAfter(0)
		}
		return nil, err
	}, backoff.WithBackOff(retryPolicy()), backoff.WithMaxElapsedTime(time.Until(deadline)))
	switch {
	case err == nil:
		if err := p.durable(ctx); err != nil {
			return nil, err
		}
		return ack, nil
	case errors.Is(err, ErrRefused), errors.Is(err, ErrStreamFull):
		return nil, err
	case last == nil:
		return nil, fmt.Errorf("%w: after %d attempts: %w", ErrUnavailable, tries, err)
	default:
		return nil, fmt.Errorf("%w: after %d attempts: %w", ErrUnavailable, tries, last)
	}
}

// durable waits for the syncer, when there is one, so that an acknowledged write is on disk.
func (p *Publisher) durable(ctx context.Context) error {
	if p.sync == nil {
		return nil
	}
	if err := p.sync.Sync(ctx); err != nil {
		return fmt.Errorf("%w: acknowledged but not yet on disk: %w", ErrUnavailable, err)
	}
	return nil
}

// retryPolicy is how long the publisher pauses between attempts that failed at once (no
// connection, no leader): short, since each caller's deadline is seconds away.
func retryPolicy() *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{
		InitialInterval:     50 * time.Millisecond,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         time.Second,
	}
}

// refused reports whether err means JetStream will never store msg. "No responders" is also
// what a stream between two leaders answers, so only the JetStream API, which knows every
// stream, can tell that none takes the subject.
func (p *Publisher) refused(ctx context.Context, msg *nats.Msg, err error) bool {
	refused, ask := refusal(err)
	if !ask {
		return refused
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, lerr := p.js.StreamNameBySubject(lctx, msg.Subject)
	refused = errors.Is(lerr, jetstream.ErrStreamNotFound)
	p.noStream.Store(refused)
	return refused
}

// full reports whether err is a stream at its limits refusing new messages: an answer that
// holds until consumers remove some, so retrying within the caller's deadline only adds load.
func full(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStoreFailed &&
		(apiErr.Description == "maximum bytes exceeded" || apiErr.Description == "maximum messages exceeded")
}

// refusal classifies err without asking the server: refused for good, or (ask) refused only
// if no stream takes the subject.
func refusal(err error) (refused, ask bool) {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == errCodeStreamNotMatch || apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum, false
	}
	if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadSubject) {
		return true, false
	}
	return false, errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
}

// PublishAsync sends ev and returns once it is on its way; it blocks while the window is full.
// done is called exactly once with the outcome: nil when JetStream acknowledged the message
// (stored now or before), else an error wrapping ErrUnavailable or ErrRefused. A message that
// fails is retried on its own goroutine, so it holds up no other; outcomes therefore arrive in
// no particular order. PublishAsync returns an error, and never calls done, when ctx ends
// first, after Close (ErrPublisherClosed), or once too many messages in a row failed
// (ErrUnavailable). PublishAsync, Flush and Close must be called from one goroutine.
func (p *Publisher) PublishAsync(ctx context.Context, ev schema.Event, done func(error)) error {
	p.startAsync.Do(p.start)
	if p.closed {
		return ErrPublisherClosed
	}
	if p.unavailable.Load() {
		return fmt.Errorf("%w: %d publishes in a row failed", ErrUnavailable, p.maxStreak)
	}
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	// The first attempt goes through the committers, as a Publish call's does, so that the
	// replay's window fills atomic batches too.
	msg := p.message(ev)
	r := &request{ctx: p.ctx, deadline: time.Now().Add(p.ackWait), msg: msg, out: make(chan answer, 1)}
	err := p.submit(ctx, r)
	if err != nil && !errors.Is(err, ErrPublisherClosed) {
		<-p.slots // ctx ended while the committers' queue was full
		return err
	}
	// Never blocks: the queue holds as many entries as there are slots.
	p.queue <- pending{msg: msg, id: ev.ID, out: r.out, err: err, done: done}
	return nil
}

func (p *Publisher) start() {
	p.slots = make(chan struct{}, p.window)
	p.queue = make(chan pending, p.window)
	p.finished = make(chan struct{})
	p.ctx, p.cancel = context.WithCancel(context.Background())
	go p.collect()
}

// Flush waits until every message PublishAsync sent so far has had its callback called, or
// ctx ends.
func (p *Publisher) Flush(ctx context.Context) error {
	p.startAsync.Do(p.start)
	// Holding every slot means nothing is in flight.
	taken := 0
	defer func() {
		for range taken {
			<-p.slots
		}
	}()
	for taken < p.window {
		select {
		case p.slots <- struct{}{}:
			taken++
		case <-ctx.Done():
			return fmt.Errorf("flush: %w", ctx.Err())
		}
	}
	return nil
}

// Close waits until every message of PublishAsync has an outcome and every Publish in flight
// has its answer; later calls of either return ErrPublisherClosed. When ctx ends first it stops
// waiting for acknowledgements and retrying, reports the PublishAsync messages still pending as
// failed (they may be stored anyway), and returns ctx's error. It never closes the connection.
func (p *Publisher) Close(ctx context.Context) error {
	p.startAsync.Do(p.start)
	if !p.closed {
		p.closed = true
		close(p.queue)
	}
	// A committer waits no longer than the attempts of the calls it holds.
	committed := make(chan struct{})
	go func() { p.closeGroups(); close(committed) }()
	var err error
	select {
	case <-p.finished:
	case <-ctx.Done():
		err = fmt.Errorf("close publisher: %w", ctx.Err())
	}
	p.cancel()
	<-p.finished
	if err != nil {
		return err
	}
	select {
	case <-committed:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close publisher: %w", ctx.Err())
	}
}

// collect takes the futures in publish order, which is nearly the order acknowledgements from
// one stream arrive in, and hands each failure to a goroutine of its own to retry.
func (p *Publisher) collect() {
	defer close(p.finished)
	defer p.retries.Wait()
	for pd := range p.queue {
		err := p.await(pd)
		if err == nil || p.ctx.Err() != nil || p.unavailable.Load() {
			if refused, ask := refusal(err); err != nil && (refused || ask && p.noStream.Load()) {
				err = fmt.Errorf("%w: %w", ErrRefused, err)
			}
			p.finish(pd, err)
			continue
		}
		p.retries.Add(1)
		go func() {
			defer p.retries.Done()
			if p.refused(p.ctx, pd.msg, err) {
				p.finish(pd, fmt.Errorf("%w: %w", ErrRefused, err))
				return
			}
			p.log.Debug().Err(err).Str("id", pd.id).Msg("async publish failed, retrying")
			ctx, cancel := context.WithTimeout(p.ctx, p.timeout)
			_, err := p.publish(ctx, pd.msg, pd.id, 1)
			cancel()
			p.finish(pd, err)
		}()
	}
}

func (p *Publisher) await(pd pending) error {
	if pd.err != nil {
		return pd.err
	}
	// An outcome already known wins over a Close that gave up waiting.
	select {
	case a := <-pd.out:
		return a.err
	default:
	}
	select {
	case a := <-pd.out:
		return a.err
	case <-p.ctx.Done():
		return p.ctx.Err()
	}
}

// finish reports pd's outcome and frees its slot, after done, so that Flush returns only once
// every callback ran.
func (p *Publisher) finish(pd pending, err error) {
	if err != nil {
		if !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrRefused) {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if p.streak.Add(1) >= int64(p.maxStreak) {
			p.unavailable.Store(true)
		}
	} else {
		p.streak.Store(0)
	}
	pd.done(err)
	<-p.slots
}

// Ready reports whether events can be published now: the connection is up and the stream
// answers. The check costs one request to the stream leader.
func (p *Publisher) Ready(ctx context.Context) error {
	if st := p.js.Conn().Status(); st != nats.CONNECTED {
		return fmt.Errorf("%w: nats connection is %s", ErrUnavailable, st)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := p.js.Stream(ctx, p.stream); err != nil {
		return fmt.Errorf("%w: stream %s: %w", ErrUnavailable, p.stream, err)
	}
	return nil
}
