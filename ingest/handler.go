// Package ingest is ayrbridge's HTTP side: the webhook handler with its limits and signature
// check, the health endpoints, and the mapping of every refusal to a status and a JSON error.
package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ayrbridge/ayrbridge/schema"
)

// Publisher stores ev and returns only after JetStream acknowledged it. It must be safe for
// concurrent use; an error means the event may not be stored and the sender should retry.
type Publisher interface {
	Publish(ctx context.Context, ev schema.Event) (seq uint64, duplicate bool, err error)
}

// Delivery headers Ayrshare may send; they travel on as CloudEvent extensions.
const (
	HeaderDeliveryID      = "X-Ayrshare-Delivery-Id"
	HeaderDeliveryAttempt = "X-Ayrshare-Delivery-Attempt"
)

// DefaultMaxBodyBytes is the largest webhook body accepted unless WithMaxBodyBytes says otherwise.
const DefaultMaxBodyBytes = 1 << 20

// DefaultRetryAfter is the Retry-After sent with a 503.
const DefaultRetryAfter = 5 * time.Second

// Handler serves POST /webhook: it checks the request, publishes the event and answers 200 only
// after the publish was acknowledged.
type Handler struct {
	pub        Publisher
	log        zerolog.Logger
	maxBody    int64
	retryAfter string
	verify     verifier
	metrics    Observer
	now        func() time.Time
	bufs       sync.Pool
}

// Observer is told the outcome of every webhook request; metrics implement it.
type Observer interface {
	// Observe records one request: its status, the action (empty when refused before parsing),
	// whether JetStream saw a duplicate, and how long the publish took (0 when not attempted).
	Observe(status int, action string, duplicate bool, publish time.Duration)
}

// Option configures a Handler.
type Option func(*Handler) error

// WithLogger sets the logger (default: none).
func WithLogger(l zerolog.Logger) Option {
	return func(h *Handler) error { h.log = l; return nil }
}

// WithMaxBodyBytes sets the largest accepted body; larger ones get 413.
func WithMaxBodyBytes(n int64) Option {
	return func(h *Handler) error {
		if n <= 0 {
			return fmt.Errorf("ingest: max body bytes %d must be positive", n)
		}
		h.maxBody = n
		return nil
	}
}

// WithSecrets turns signature verification on: a request must carry a signature made with one
// of secrets. Empty secrets are ignored; none at all leaves verification off.
func WithSecrets(secrets ...string) Option {
	return func(h *Handler) error {
		for _, s := range secrets {
			if s = strings.TrimSpace(s); s != "" {
				h.verify.secrets = append(h.verify.secrets, []byte(s))
			}
		}
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

// WithObserver reports each request's outcome to o.
func WithObserver(o Observer) Option {
	return func(h *Handler) error {
		if o == nil {
			return errors.New("ingest: nil Observer")
		}
		h.metrics = o
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
		metrics:    nopObserver{},
		now:        time.Now,
	}
	h.verify.now = time.Now
	for _, opt := range opts {
		if err := opt(h); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Accepted is the JSON body of a 200 answer.
type Accepted struct {
	ID        string `json:"id"`
	Subject   string `json:"subject"`
	Sequence  uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.refuse(w, r, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed: use POST", nil)
		return
	}
	if !jsonContentType(r.Header.Get("Content-Type")) {
		h.refuse(w, r, http.StatusUnsupportedMediaType, "content type must be application/json", nil)
		return
	}
	if r.ContentLength > h.maxBody {
		h.refuse(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("body exceeds %d bytes", h.maxBody), nil)
		return
	}
	buf := h.getBuffer()
	defer h.bufs.Put(buf)
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, h.maxBody+1)); err != nil {
		h.refuse(w, r, http.StatusBadRequest, "could not read body", err)
		return
	}
	if int64(buf.Len()) > h.maxBody {
		h.refuse(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("body exceeds %d bytes", h.maxBody), nil)
		return
	}
	body := buf.Bytes()
	if h.verify.enabled() {
		if err := h.verify.verify(r.Header, body); err != nil {
			h.refuse(w, r, http.StatusUnauthorized, err.Error(), nil)
			return
		}
	}
	ev, err := schema.NewEvent(body, schema.Meta{
		ReceivedAt:      h.now(),
		DeliveryID:      r.Header.Get(HeaderDeliveryID),
		DeliveryAttempt: r.Header.Get(HeaderDeliveryAttempt),
		TraceParent:     r.Header.Get("Traceparent"),
		TraceState:      r.Header.Get("Tracestate"),
	})
	if err != nil {
		h.refuse(w, r, http.StatusBadRequest, err.Error(), nil)
		return
	}
	start := time.Now()
	seq, dup, err := h.pub.Publish(r.Context(), ev)
	took := time.Since(start)
	if err != nil {
		w.Header().Set("Retry-After", h.retryAfter)
		h.log.Warn().Err(err).Str("id", ev.ID).Str("subject", ev.Subject).Dur("took", took).Msg("publish failed")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "event store unavailable, retry later"})
		h.metrics.Observe(http.StatusServiceUnavailable, ev.Env.Action, false, took)
		return
	}
	writeJSON(w, http.StatusOK, Accepted{ID: ev.ID, Subject: ev.Subject, Sequence: seq, Duplicate: dup})
	h.metrics.Observe(http.StatusOK, ev.Env.Action, dup, took)
	h.log.Debug().Str("id", ev.ID).Str("subject", ev.Subject).Uint64("seq", seq).Bool("duplicate", dup).Msg("webhook stored")
}

func (h *Handler) getBuffer() *bytes.Buffer {
	if b, ok := h.bufs.Get().(*bytes.Buffer); ok {
		b.Reset()
		return b
	}
	return new(bytes.Buffer)
}

// refuse answers a request that can never succeed as sent; cause is logged, never echoed.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, status int, msg string, cause error) {
	h.log.Info().Err(cause).Int("status", status).Str("reason", msg).Str("remote", r.RemoteAddr).Msg("webhook refused")
	writeJSON(w, status, errorBody{Error: msg})
	h.metrics.Observe(status, "", false, 0)
}

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// jsonContentType accepts application/json, any +json type and, for senders that set none, an
// absent header.
func jsonContentType(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

type nopObserver struct{}

func (nopObserver) Observe(int, string, bool, time.Duration) {}
