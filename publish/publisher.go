package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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
	nc             *nats.Conn
	expectStream   []string // the Nats-Expected-Stream value, shared read-only by every message
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
	p := &Publisher{js: js, nc: js.Conn(), expectStream: []string{stream}, stream: stream, timeout: 5 * time.Second, backoff: 50 * time.Millisecond, log: zerolog.Nop()}
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
	return p.PublishMsg(ctx, ev.Msg())
}

// PublishMsg is Publish for a prepared message, which must carry a Nats-Msg-Id header. It
// adds the Nats-Expected-Stream header, so a message the subject would route elsewhere is
// refused rather than stored in the wrong stream.
func (p *Publisher) PublishMsg(ctx context.Context, msg *nats.Msg) (seq uint64, duplicate bool, err error) {
	msg.Header[jetstream.ExpectedStreamHeader] = p.expectStream
	deadline := time.Now().Add(p.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	backoff := p.backoff
	for attempt := 1; ; attempt++ {
		wait := min(p.attemptTimeout, time.Until(deadline))
		var resp *nats.Msg
		if ctx.Done() == nil {
			// No cancellation to watch (the bridge's case): a pooled timer, no context.
			resp, err = p.nc.RequestMsg(msg, wait)
		} else {
			actx, cancel := context.WithTimeout(ctx, wait)
			resp, err = p.nc.RequestMsgWithContext(actx, msg)
			cancel()
		}
		if err == nil {
			seq, duplicate, err = parseAck(resp.Data)
			if err == nil {
				return seq, duplicate, nil
			}
		}
		p.log.Debug().Err(err).Int("attempt", attempt).Str("id", msg.Header.Get(nats.MsgIdHdr)).Msg("publish attempt failed")
		pause := min(backoff, time.Second)
		backoff *= 2
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			pause = 0 // the attempt already waited; send again at once, with the same id
		}
		if ctx.Err() != nil || time.Until(deadline) <= pause {
			return 0, false, fmt.Errorf("%w: after %d attempts: %w", ErrUnavailable, attempt, err)
		}
		if pause > 0 {
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
}

// parseAck reads JetStream's answer to a publish. The fields are found by hand: the answer's
// shape is fixed and decoding it with reflection cost more than the rest of the publish.
func parseAck(data []byte) (seq uint64, duplicate bool, err error) {
	if bytes.Contains(data, []byte(`"error"`)) {
		var res struct {
			Error *jetstream.APIError `json:"error"`
		}
		if json.Unmarshal(data, &res) == nil && res.Error != nil {
			return 0, false, fmt.Errorf("jetstream refused the message: %w", res.Error)
		}
		return 0, false, jetstream.ErrInvalidJSAck
	}
	digits, ok := ackField(data, "seq")
	if !ok || !bytes.Contains(data, []byte(`"stream"`)) {
		return 0, false, jetstream.ErrInvalidJSAck
	}
	n := 0
	for n < len(digits) && digits[n] >= '0' && digits[n] <= '9' {
		n++
	}
	seq, err = strconv.ParseUint(string(digits[:n]), 10, 64)
	if err != nil {
		return 0, false, jetstream.ErrInvalidJSAck
	}
	dup, _ := ackField(data, "duplicate")
	return seq, bytes.HasPrefix(dup, []byte("true")), nil
}

// ackField returns what follows the top-level member name's colon (and any spaces) in an ack:
// the server writes some acks by hand ("duplicate": true) and others with encoding/json.
func ackField(data []byte, name string) ([]byte, bool) {
	for {
		i := bytes.Index(data, []byte(`"`+name+`"`))
		if i < 0 {
			return nil, false
		}
		data = bytes.TrimLeft(data[i+len(name)+2:], " ")
		if len(data) > 0 && data[0] == ':' {
			return bytes.TrimLeft(data[1:], " "), true
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
