// Package ingest is ayrbridge's HTTP side: the webhook handler with its limits and signature
// check, the health endpoints, the server that enforces size and time limits, and the mapping
// of every refusal to a status and a JSON error.
package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/ayrbridge/ayrbridge/schema"
)

// Publisher stores ev and returns only after JetStream acknowledged it, or when ctx ends. It
// must be safe for concurrent use; an error means the event may not be stored and the sender
// should retry.
type Publisher interface {
	Publish(ctx context.Context, ev schema.Event) (seq uint64, duplicate bool, err error)
}

// Delivery headers Ayrshare may send; they travel on as the deliveryid and deliveryattempt
// CloudEvent extensions.
const (
	RequestDeliveryID      = "X-Ayrshare-Delivery-Id"
	RequestDeliveryAttempt = "X-Ayrshare-Delivery-Attempt"
)

// DefaultMaxBodyBytes is the largest webhook body accepted unless WithMaxBodyBytes says otherwise.
const DefaultMaxBodyBytes = 1 << 20

// DefaultPublishTimeout bounds one webhook's publish, retries included, unless
// WithPublishTimeout says otherwise.
const DefaultPublishTimeout = 5 * time.Second

// DefaultRetryAfter is the Retry-After sent with a 503.
const DefaultRetryAfter = 5 * time.Second

// Handler serves POST /webhook: it checks the request, publishes the event and answers 200 only
// after the publish was acknowledged.
type Handler struct {
	pub        Publisher
	log        zerolog.Logger
	refusals   zerolog.Logger // sampled: a flood of bad requests must not flood the log
	maxBody    int
	retryAfter string
	pubTimeout time.Duration
	verify     verifier
	secrets    [][]byte // the default secrets, until NewHandler builds their keyset
	metrics    *Metrics
	now        func() time.Time
}

// Option configures a Handler.
type Option func(*Handler) error

// WithLogger sets the logger (default: none).
func WithLogger(l zerolog.Logger) Option {
	return func(h *Handler) error { h.log = l; return nil }
}

// WithMaxBodyBytes sets the largest accepted body; larger ones get 413.
func WithMaxBodyBytes(n int) Option {
	return func(h *Handler) error {
		if n <= 0 {
			return fmt.Errorf("ingest: max body bytes %d must be positive", n)
		}
		h.maxBody = n
		return nil
	}
}

// WithSecrets turns signature verification on: a request whose profile has no secrets of its
// own (see WithProfileSecrets) must carry a signature made with one of secrets, the Primary
// Profile's. Blank secrets are ignored; none at all, and no profile secrets, leaves
// verification off.
func WithSecrets(secrets ...string) Option {
	return func(h *Handler) error {
		for _, s := range secrets {
			if s = strings.TrimSpace(s); s != "" {
				h.secrets = append(h.secrets, []byte(s))
			}
		}
		return nil
	}
}

// WithProfileSecrets binds each profile that has secrets in p to those secrets alone, and turns
// signature verification on for every request.
func WithProfileSecrets(p *ProfileSecrets) Option {
	return func(h *Handler) error {
		if p == nil {
			return errors.New("ingest: nil ProfileSecrets")
		}
		h.verify.profiles = p
		return nil
	}
}

// WithTimestampSkew refuses signed requests whose X-Authorization-Timestamp is further than d
// from now (0, the default, leaves the timestamp unchecked).
func WithTimestampSkew(d time.Duration) Option {
	return func(h *Handler) error {
		if d < 0 {
			return fmt.Errorf("ingest: timestamp skew %s must not be negative", d)
		}
		h.verify.maxSkew = d
		return nil
	}
}

// WithRetryAfter sets the Retry-After of 503 answers (default 5s).
func WithRetryAfter(d time.Duration) Option {
	return func(h *Handler) error {
		if d < time.Second {
			return fmt.Errorf("ingest: retry-after %s must be at least 1s", d)
		}
		h.retryAfter = strconv.Itoa(int(d.Round(time.Second) / time.Second))
		return nil
	}
}

// WithPublishTimeout bounds how long one webhook waits for JetStream's acknowledgement,
// retries included, before it is answered 503 (default 5s).
func WithPublishTimeout(d time.Duration) Option {
	return func(h *Handler) error {
		if d <= 0 {
			return fmt.Errorf("ingest: publish timeout %s must be positive", d)
		}
		h.pubTimeout = d
		return nil
	}
}

// WithMetrics records every request in m.
func WithMetrics(m *Metrics) Option {
	return func(h *Handler) error {
		if m == nil {
			return errors.New("ingest: nil Metrics")
		}
		h.metrics = m
		return nil
	}
}

// WithClock replaces time.Now, for tests of timestamps.
func WithClock(now func() time.Time) Option {
	return func(h *Handler) error { h.now = now; h.verify.now = now; return nil }
}

// NewHandler returns a Handler that publishes through pub.
func NewHandler(pub Publisher, opts ...Option) (*Handler, error) {
	if pub == nil {
		return nil, errors.New("ingest: nil Publisher")
	}
	h := &Handler{
		pub:        pub,
		log:        zerolog.Nop(),
		maxBody:    DefaultMaxBodyBytes,
		retryAfter: strconv.Itoa(int(DefaultRetryAfter / time.Second)),
		pubTimeout: DefaultPublishTimeout,
		now:        time.Now,
	}
	h.verify.now = time.Now
	for _, opt := range opts {
		if err := opt(h); err != nil {
			return nil, err
		}
	}
	if len(h.secrets) > 0 {
		h.verify.defaults = newKeyset(h.secrets)
		h.secrets = nil
	}
	h.refusals = sampled(h.log)
	return h, nil
}

// ServeFastHTTP handles one webhook request.
func (h *Handler) ServeFastHTTP(rc *fasthttp.RequestCtx) {
	h.metrics.begin()
	status, action, dup, took := h.serve(rc)
	h.metrics.done(status, action, dup, took)
}

// serve answers rc and reports the status, and for a stored event its action, whether it was
// a duplicate and how long the publish took.
func (h *Handler) serve(rc *fasthttp.RequestCtx) (status int, action string, dup bool, took time.Duration) {
	defer func() {
		// Nothing should panic here (fuzzing checks); if something does, one request fails,
		// not the process with every request in flight.
		if p := recover(); p != nil {
			h.log.Error().Interface("panic", p).Msg("webhook handler panicked")
			status = writeError(rc, errInternal, errInternal.Error())
		}
	}()
	if !rc.IsPost() {
		rc.Response.Header.Set("Allow", fasthttp.MethodPost)
		return h.refuse(rc, errMethod, errMethod.Error()), "", false, 0
	}
	if !jsonContentType(rc.Request.Header.ContentType()) {
		return h.refuse(rc, errContentType, errContentType.Error()), "", false, 0
	}
	body := rc.PostBody()
	if len(body) > h.maxBody {
		return h.refuse(rc, errTooLarge, "body exceeds "+strconv.Itoa(h.maxBody)+" bytes"), "", false, 0
	}
	hdr := &rc.Request.Header
	ev, err := schema.NewEvent(body, schema.Meta{
		ReceivedAt:      h.now(),
		DeliveryID:      headerString(hdr, RequestDeliveryID),
		DeliveryAttempt: headerString(hdr, RequestDeliveryAttempt),
		TraceParent:     traceParent(hdr.Peek("Traceparent")),
		TraceState:      headerString(hdr, "Tracestate"),
	})
	if err != nil {
		// Whatever schema refuses is the payload's fault: a 4xx, never retried.
		return h.refuse(rc, fmt.Errorf("%w: %w", errPayload, err), err.Error()), "", false, 0
	}
	// After parsing: the refId picks the secrets. Parsing is what every request pays anyway, and
	// nothing is stored before the signature is checked.
	if h.verify.enabled() {
		if err := h.verify.verify(hdr, body, ev.Env.RefID); err != nil {
			h.metrics.signatureFailed(err)
			return h.refuse(rc, err, err.Error()), "", false, 0
		}
	}
	// The event outlives this request: a publish the caller gave up on may still be sent, and
	// resent, after fasthttp reused the body's buffer for the connection's next request.
	ev.Data = bytes.Clone(ev.Data)
	// Not rc: fasthttp cancels it when the server shuts down, and a request in flight then
	// should still finish within its own deadline.
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), h.pubTimeout)
	seq, dup, err := h.pub.Publish(ctx, ev)
	cancel()
	took = time.Since(start)
	if err != nil {
		rc.Response.Header.Set("Retry-After", h.retryAfter)
		h.log.Warn().Err(err).Str("id", ev.ID).Str("subject", ev.Subject).Dur("took", took).Msg("publish failed")
		return writeError(rc, errUnavailable, errUnavailable.Error()), "", false, took
	}
	b := append(rc.Response.Body()[:0], `{"id":`...)
	b = appendJSONString(b, ev.ID)
	b = append(b, `,"subject":`...)
	b = appendJSONString(b, ev.Subject)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"duplicate":`...)
	b = strconv.AppendBool(b, dup)
	b = append(b, "}\n"...)
	writeJSON(rc, fasthttp.StatusOK, b)
	if e := h.log.Debug(); e.Enabled() {
		e.Str("id", ev.ID).Str("subject", ev.Subject).Uint64("seq", seq).Bool("duplicate", dup).Msg("webhook stored")
	}
	return fasthttp.StatusOK, ev.Env.Action, dup, took
}

// refuse answers a request that will not be stored; the reason is logged (sampled), never a
// secret, a signature or the body.
func (h *Handler) refuse(rc *fasthttp.RequestCtx, err error, msg string) int {
	status := writeError(rc, err, msg)
	h.refusals.Info().Int("status", status).Str("reason", msg).Stringer("remote", rc.RemoteAddr()).Msg("webhook refused")
	return status
}

// sampled keeps the first 20 lines a second, then one in 1,000: what a flood of bad requests
// or handshakes logs must stay readable and cheap.
func sampled(l zerolog.Logger) zerolog.Logger {
	return l.Sample(&zerolog.BurstSampler{Burst: 20, Period: time.Second, NextSampler: &zerolog.BasicSampler{N: 1000}})
}

// jsonContentType accepts application/json, any +json type and, for senders that set none, an
// absent header.
func jsonContentType(ct []byte) bool {
	if len(ct) == 0 {
		return true
	}
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = bytes.TrimSpace(ct)
	return bytes.EqualFold(ct, []byte("application/json")) ||
		(len(ct) > 5 && bytes.EqualFold(ct[len(ct)-5:], []byte("+json")) && bytes.HasPrefix(bytes.ToLower(ct), []byte("application/")))
}

// maxHeaderValue bounds what a delivery header may add to the stored message.
const maxHeaderValue = 256

// headerString returns a request header that travels on as an extension, or "" when it is
// absent, too long or not printable ASCII (the extension is dropped rather than the event).
func headerString(h *fasthttp.RequestHeader, key string) string {
	v := h.Peek(key)
	if len(v) == 0 || len(v) > maxHeaderValue {
		return ""
	}
	for _, c := range v {
		if c < 0x20 || c > 0x7e {
			return ""
		}
	}
	return string(v)
}

// traceParent returns v when it is a valid W3C traceparent (version 00 layout), else "": a
// consumer continuing the trace must be able to trust its shape.
func traceParent(v []byte) string {
	// 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' || (len(v) > 55 && (v[0] == '0' && v[1] == '0' || v[55] != '-')) {
		return ""
	}
	if bytes.Equal(v[:2], []byte("ff")) || !lowerHex(v[:2]) || !lowerHex(v[3:35]) || !lowerHex(v[36:52]) || !lowerHex(v[53:55]) {
		return ""
	}
	if allZero(v[3:35]) || allZero(v[36:52]) {
		return ""
	}
	return string(v[:55])
}

func lowerHex(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != '0' {
			return false
		}
	}
	return true
}
