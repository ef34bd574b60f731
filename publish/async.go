package publish

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// ErrPublisherClosed is returned by AsyncPublisher.Publish after Close.
var ErrPublisherClosed = errors.New("async publisher closed")

// AsyncPublisher publishes many messages to one stream with a bounded number awaiting
// acknowledgement, and reports each message's outcome to a callback. A message JetStream does not
// acknowledge (error, timeout, lost connection) is published again, with the same Nats-Msg-Id,
// until the retry timeout has passed; so within the stream's duplicate window it is stored once.
//
// Publish, Flush and Close must be called from one goroutine; the callbacks run on another, in the
// order the messages were published. Publish does not guarantee that the message is stored:
// only a nil error passed to its callback does.
type AsyncPublisher struct {
	js        jetstream.JetStream
	stream    string
	expect    jetstream.PublishOpt // made once: it is the same for every message
	retry     *Publisher
	log       zerolog.Logger
	window    int
	ackWait   time.Duration
	retryWait time.Duration
	maxStreak int
	slots     chan struct{}
	queue     chan pending
	finished  chan struct{}
	ctx       context.Context // ends when Close gives up waiting: no more waiting or retrying
	cancel    context.CancelFunc
	closed    bool
	// unavailable is set after maxStreak failures in a row.
	unavailable atomic.Bool
}

type pending struct {
	msg  *nats.Msg
	fut  jetstream.PubAckFuture
	err  error // the publish failed before reaching the server
	done func(error)
}

// AsyncOption configures an AsyncPublisher.
type AsyncOption func(*AsyncPublisher) error

// WithWindow sets how many messages may await acknowledgement at once (default 4096).
func WithWindow(n int) AsyncOption {
	return func(p *AsyncPublisher) error { p.window = n; return positive("publish window", n) }
}

// WithAckWait sets how long an acknowledgement may take before the message is sent again (default 5s).
func WithAckWait(d time.Duration) AsyncOption {
	return func(p *AsyncPublisher) error { p.ackWait = d; return positive("ack wait", d) }
}

// WithRetryTimeout bounds the synchronous retries of one unacknowledged message (default 5s).
func WithRetryTimeout(d time.Duration) AsyncOption {
	return func(p *AsyncPublisher) error { p.retryWait = d; return positive("retry timeout", d) }
}

// WithMaxFailures sets after how many failed messages in a row Publish stops accepting
// messages and returns ErrUnavailable, and later failures are reported without retrying them
// (default 64). It keeps a run against a dead server from retrying every message in turn.
func WithMaxFailures(n int) AsyncOption {
	return func(p *AsyncPublisher) error { p.maxStreak = n; return positive("max failures", n) }
}

// positive is the check of the options above: the constructor fails on its error.
func positive[T int | time.Duration](what string, v T) error {
	if v <= 0 {
		return fmt.Errorf("%s %v: %w", what, v, jetstream.ErrInvalidOption)
	}
	return nil
}

// WithAsyncLogger sets the logger (default: none).
func WithAsyncLogger(l zerolog.Logger) AsyncOption {
	return func(p *AsyncPublisher) error { p.log = l; return nil }
}

// NewAsyncPublisher returns an AsyncPublisher for stream on nc, with its own JetStream context
// sized to the window. It never closes nc.
func NewAsyncPublisher(nc *nats.Conn, stream string, opts ...AsyncOption) (*AsyncPublisher, error) {
	if nc == nil {
		return nil, errors.New("publish: nil connection")
	}
	p := &AsyncPublisher{
		stream:    stream,
		log:       zerolog.Nop(),
		window:    4096,
		ackWait:   5 * time.Second,
		retryWait: 5 * time.Second,
		maxStreak: 64,
	}
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
	p.expect = jetstream.WithExpectStream(stream)
	p.retry, err = NewPublisher(js, stream, WithTimeout(p.retryWait), WithLogger(p.log))
	if err != nil {
		return nil, err
	}
	p.slots = make(chan struct{}, p.window)
	p.queue = make(chan pending, p.window)
	p.finished = make(chan struct{})
	p.ctx, p.cancel = context.WithCancel(context.Background())
	go p.collect()
	return p, nil
}

// Publish sends msg, which must carry a Nats-Msg-Id header, and returns once it is on its way;
// it blocks while the window is full. done is called exactly once with the outcome: nil when
// JetStream acknowledged the message (stored now or before), else an error wrapping
// ErrUnavailable. Publish returns an error, and never calls done, when ctx ends first, after
// Close (ErrPublisherClosed), or once too many messages in a row failed (ErrUnavailable).
func (p *AsyncPublisher) Publish(ctx context.Context, msg *nats.Msg, done func(error)) error {
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
	fut, err := p.js.PublishMsgAsync(msg, p.expect)
	// Never blocks: the queue holds as many entries as there are slots.
	p.queue <- pending{msg: msg, fut: fut, err: err, done: done}
	return nil
}

// Flush waits until every message published so far has had its callback called, or ctx ends.
func (p *AsyncPublisher) Flush(ctx context.Context) error {
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

// Close waits until every published message has an outcome. When ctx ends first it stops
// waiting for acknowledgements and retrying, reports the messages still pending as failed
// (they may be stored anyway), and returns ctx's error.
func (p *AsyncPublisher) Close(ctx context.Context) error {
	if !p.closed {
		p.closed = true
		close(p.queue)
	}
	select {
	case <-p.finished:
		p.cancel()
		return nil
	case <-ctx.Done():
		p.cancel()
		<-p.finished
		return fmt.Errorf("close async publisher: %w", ctx.Err())
	}
}

// collect reports outcomes in publish order. Acknowledgements from one stream arrive nearly in
// that order, so waiting for the oldest first costs little and keeps the window's accounting simple.
func (p *AsyncPublisher) collect() {
	defer close(p.finished)
	streak := 0
	for pd := range p.queue {
		err := p.await(pd)
		if err != nil && p.ctx.Err() == nil && !p.unavailable.Load() {
			p.log.Debug().Err(err).Str("id", pd.msg.Header.Get(nats.MsgIdHdr)).Msg("async publish failed, retrying")
			_, _, err = p.retry.PublishMsg(p.ctx, pd.msg)
		}
		if err != nil {
			if !errors.Is(err, ErrUnavailable) {
				err = fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
			if streak++; streak >= p.maxStreak {
				p.unavailable.Store(true)
			}
		} else {
			streak = 0
		}
		pd.done(err)
		<-p.slots // after done, so that Flush returns only once every callback ran
	}
}

func (p *AsyncPublisher) await(pd pending) error {
	if pd.err != nil {
		return pd.err
	}
	okc, errc := pd.fut.Ok(), pd.fut.Err()
	// An outcome already known wins over a Close that gave up waiting.
	select {
	case <-okc:
		return nil
	case err := <-errc:
		return err
	default:
	}
	select {
	case <-okc:
		return nil
	case err := <-errc:
		return err
	case <-p.ctx.Done():
		return p.ctx.Err()
	}
}
