package publish

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ayrbridge/ayrbridge/schema"
)

// ErrUnavailable means JetStream did not acknowledge in time or could not be reached; the
// message may or may not be stored, and publishing it again with the same id is safe.
var ErrUnavailable = errors.New("jetstream unavailable")

// Publisher publishes events to one stream and waits for each acknowledgement. Many
// goroutines may call Publish at once: their messages are in flight together on one connection.
type Publisher struct {
	js             jetstream.JetStream
	stream         string
	timeout        time.Duration
	attemptTimeout time.Duration
	backoff        time.Duration
	log            zerolog.Logger
}

// Option configures a Publisher.
type Option func(*Publisher) error

// WithTimeout bounds one Publish call, retries included (default 5s).
func WithTimeout(d time.Duration) Option {
	return func(p *Publisher) error {
		if d <= 0 {
			return fmt.Errorf("publish timeout %s: %w", d, jetstream.ErrInvalidOption)
		}
		p.timeout = d
		return nil
	}
}

// WithAttemptTimeout bounds one attempt inside Publish (default: half the timeout), so a
// request lost during a leader change is sent again, with the same id, before the caller gives up.
func WithAttemptTimeout(d time.Duration) Option {
	return func(p *Publisher) error {
		if d <= 0 {
			return fmt.Errorf("publish attempt timeout %s: %w", d, jetstream.ErrInvalidOption)
		}
		p.attemptTimeout = d
		return nil
	}
}

// WithLogger sets the logger (default: none).
func WithLogger(l zerolog.Logger) Option {
	return func(p *Publisher) error { p.log = l; return nil }
}

// NewPublisher returns a Publisher for stream on js. It never closes the connection under js.
func NewPublisher(js jetstream.JetStream, stream string, opts ...Option) (*Publisher, error) {
	if js == nil {
		return nil, errors.New("publish: nil JetStream")
	}
	if stream == "" {
		return nil, errors.New("publish: empty stream name")
	}
	p := &Publisher{js: js, stream: stream, timeout: 5 * time.Second, backoff: 50 * time.Millisecond, log: zerolog.Nop()}
	for _, opt := range opts {
		if err := opt(p); err != nil {
			return nil, err
		}
	}
	if p.attemptTimeout == 0 || p.attemptTimeout > p.timeout {
		p.attemptTimeout = p.timeout / 2
	}
	return p, nil
}

// Publish stores ev in the stream and returns once JetStream acknowledged it, or with an error
// wrapping ErrUnavailable (safe to retry: the Nats-Msg-Id makes a stored copy a duplicate).
// It retries lost or unanswered attempts with the same id within its timeout.
func (p *Publisher) Publish(ctx context.Context, ev schema.Event) (seq uint64, duplicate bool, err error) {
	ack, err := p.PublishMsg(ctx, ev.Msg())
	if err != nil {
		return 0, false, err
	}
	return ack.Sequence, ack.Duplicate, nil
}

// PublishMsg is Publish for a prepared message, which must carry a Nats-Msg-Id header.
func (p *Publisher) PublishMsg(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	backoff := p.backoff
	for attempt := 1; ; attempt++ {
		actx, acancel := context.WithTimeout(ctx, p.attemptTimeout)
		ack, err := p.js.PublishMsg(actx, msg, jetstream.WithExpectStream(p.stream), jetstream.WithRetryAttempts(0))
		acancel()
		if err == nil {
			return ack, nil
		}
		p.log.Debug().Err(err).Int("attempt", attempt).Str("id", msg.Header.Get(nats.MsgIdHdr)).Msg("publish attempt failed")
		wait := min(backoff, time.Second)
		backoff *= 2
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			wait = 0 // the attempt already waited
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: after %d attempts: %w", ErrUnavailable, attempt, err)
		case <-time.After(wait):
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: after %d attempts: %w", ErrUnavailable, attempt, err)
		}
	}
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
