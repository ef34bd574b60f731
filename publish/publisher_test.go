package publish_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ayrbridge/ayrbridge/internal/logtest"
	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/publish"
	"github.com/ayrbridge/ayrbridge/publish/cenats"
	"github.com/ayrbridge/ayrbridge/schema"
)

func event(t testing.TB, body string) schema.Event {
	t.Helper()
	ev, err := schema.NewEvent([]byte(body), schema.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// feed is an event on ayrshare.feed.none with the given hookId.
func feed(t testing.TB, id string) schema.Event {
	t.Helper()
	return event(t, `{"action":"feed","hookId":"`+id+`"}`)
}

// newStream starts a server with the bridge's stream and returns a connection to it.
func newStream(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	ns := natstest.RunServer(t, "")
	nc, js := natstest.Connect(t, ns)
	if _, err := publish.EnsureStream(t.Context(), js, streamConfig()); err != nil {
		t.Fatalf("ensure stream: %v", err)
	}
	return nc, js
}

func newPublisher(t testing.TB, nc *nats.Conn, stream string, opts ...publish.Option) *publish.Publisher {
	t.Helper()
	p, err := publish.NewPublisher(nc, stream, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

func TestPublishStoresOnceWithHeaders(t *testing.T) {
	nc, js := newStream(t)
	p := newPublisher(t, nc, "AYRSHARE")
	ev := event(t, `{"action":"social","type":"link","hookId":"p1","refId":"r"}`)

	seq, dup, err := p.Publish(t.Context(), ev)
	if err != nil || seq != 1 || dup {
		t.Fatalf("Publish = %d %v %v, want 1 false nil", seq, dup, err)
	}
	seq, dup, err = p.Publish(t.Context(), ev)
	if err != nil || seq != 1 || !dup {
		t.Fatalf("second Publish = %d %v %v, want 1 true nil", seq, dup, err)
	}
	msgs := natstest.Messages(t, js, "AYRSHARE")
	if len(msgs) != 1 {
		t.Fatalf("stream holds %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.Subject != "ayrshare.social.link" || string(m.Data) != string(ev.Data) {
		t.Errorf("stored %s %q", m.Subject, m.Data)
	}
	want := cenats.Header(ev)
	want.Set(jetstream.ExpectedStreamHeader, "AYRSHARE")
	for k, v := range want {
		if got := m.Header.Get(k); got != v[0] {
			t.Errorf("stored header %s = %q, want %q", k, got, v[0])
		}
	}
	if len(m.Header) != len(want) {
		t.Errorf("stored headers %v, want %v", m.Header, want)
	}
}

// TestPublishStreamNamedError: the ack is decoded, not searched, so no stream name can make an
// acknowledgement look like an error.
func TestPublishStreamNamedError(t *testing.T) {
	for _, name := range []string{"error", "duplicate", "seq"} {
		t.Run(name, func(t *testing.T) {
			ns := natstest.RunServer(t, "")
			nc, js := natstest.Connect(t, ns)
			cfg := streamConfig()
			cfg.Name = name
			if _, err := publish.EnsureStream(t.Context(), js, cfg); err != nil {
				t.Fatal(err)
			}
			p := newPublisher(t, nc, name)
			for i, wantDup := range []bool{false, true} {
				seq, dup, err := p.Publish(t.Context(), feed(t, "e1"))
				if err != nil || seq != 1 || dup != wantDup {
					t.Fatalf("publish %d = %d %v %v, want 1 %v nil", i, seq, dup, err, wantDup)
				}
			}
		})
	}
}

func TestPublishConcurrent(t *testing.T) {
	nc, js := newStream(t)
	p := newPublisher(t, nc, "AYRSHARE")
	const n = 500
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			// Every id twice, at once: JetStream must keep one of each.
			if _, _, err := p.Publish(t.Context(), feed(t, fmt.Sprint("c", i/2))); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := len(natstest.Messages(t, js, "AYRSHARE")); got != n/2 {
		t.Fatalf("stream holds %d, want %d", got, n/2)
	}
}

// TestPublishRefusedAtOnce: errors that no retry can heal end the publish long before its
// deadline, wrapped in ErrRefused.
func TestPublishRefusedAtOnce(t *testing.T) {
	tests := map[string]struct {
		stream publish.StreamConfig // created before publishing, unless Name is empty
		ev     func(t testing.TB) schema.Event
	}{
		"no stream at all": {ev: func(t testing.TB) schema.Event { return feed(t, "x") }},
		"no stream for the subject": {
			stream: publish.StreamConfig{Name: "AYRSHARE", Subjects: []string{"other.>"}, Replicas: 1, DedupWindow: time.Hour},
			ev:     func(t testing.TB) schema.Event { return feed(t, "x") },
		},
		"subject in another stream": {
			stream: publish.StreamConfig{Name: "OTHER", Subjects: []string{"ayrshare.>"}, Replicas: 1, DedupWindow: time.Hour},
			ev:     func(t testing.TB) schema.Event { return feed(t, "x") },
		},
		"larger than the server takes": {
			stream: streamConfig(),
			ev: func(t testing.TB) schema.Event {
				return event(t, `{"action":"feed","hookId":"big","pad":"`+strings.Repeat("x", 2<<20)+`"}`)
			},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			ns := natstest.RunServer(t, "")
			nc, js := natstest.Connect(t, ns)
			if tt.stream.Name != "" {
				if _, err := publish.EnsureStream(t.Context(), js, tt.stream); err != nil {
					t.Fatal(err)
				}
			}
			p := newPublisher(t, nc, "AYRSHARE", publish.WithTimeout(20*time.Second))
			failsWithin(t, p, t.Context(), tt.ev(t), publish.ErrRefused, 5*time.Second)
		})
	}
}

// TestPublishCallerDeadline: the caller's deadline bounds the retries, not the publisher's
// default timeout.
func TestPublishCallerDeadline(t *testing.T) {
	dir := t.TempDir()
	ns := natstest.RunServer(t, dir)
	nc, js := natstest.Connect(t, ns)
	if _, err := publish.EnsureStream(t.Context(), js, streamConfig()); err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, nc, "AYRSHARE", publish.WithTimeout(time.Minute))
	ns.Shutdown()
	ns.WaitForShutdown()
	failsWithin(t, p, ctxTimeout(t, 300*time.Millisecond), feed(t, "late"), publish.ErrUnavailable, 2*time.Second)
}

// failsWithin publishes ev and checks that it fails with want, and long before limit.
func failsWithin(t *testing.T, p *publish.Publisher, ctx context.Context, ev schema.Event, want error, limit time.Duration) {
	t.Helper()
	start := time.Now()
	_, _, err := p.Publish(ctx, ev)
	if !errors.Is(err, want) {
		t.Fatalf("Publish = %v, want %v", err, want)
	}
	if took := time.Since(start); took > limit {
		t.Fatalf("Publish failed after %s, want within %s", took, limit)
	}
}

func TestPublishSurvivesServerRestart(t *testing.T) {
	dir := t.TempDir()
	ns := natstest.RunServer(t, dir)
	addr := ns.Addr().String()
	nc, err := publish.Connect(publish.ConnConfig{URLs: []string{ns.ClientURL()}}, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	if _, err := publish.EnsureStream(t.Context(), js, streamConfig()); err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, nc, "AYRSHARE", publish.WithTimeout(500*time.Millisecond))
	if _, _, err := p.Publish(t.Context(), feed(t, "before")); err != nil {
		t.Fatal(err)
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	failsWithin(t, p, t.Context(), feed(t, "during"), publish.ErrUnavailable, 5*time.Second)
	if err := p.Ready(t.Context()); err == nil {
		t.Fatal("Ready while the server is down")
	}

	natstest.RunServerAt(t, dir, addr)
	if err := publish.WaitConnected(t.Context(), nc); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error { return p.Ready(t.Context()) })
	seq, _, err := p.Publish(t.Context(), feed(t, "after"))
	if err != nil || seq != 2 {
		t.Fatalf("Publish after restart = %d %v, want seq 2", seq, err)
	}
}

// TestTimedOutPublishRetriedStoredOnce holds back the server's answers so the publish times
// out after the server stored the message; the retry, with the same Nats-Msg-Id, is a
// duplicate and the stream keeps one copy.
func TestTimedOutPublishRetriedStoredOnce(t *testing.T) {
	ns := natstest.RunServer(t, "")
	_, direct := natstest.Connect(t, ns)
	if _, err := publish.EnsureStream(t.Context(), direct, streamConfig()); err != nil {
		t.Fatal(err)
	}
	proxy := natstest.NewProxy(t, ns.Addr().String())
	nc, err := nats.Connect(proxy.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	p := newPublisher(t, nc, "AYRSHARE", publish.WithTimeout(400*time.Millisecond))
	ev := event(t, `{"action":"scheduled","hookId":"ambiguous-1"}`)

	proxy.Hold()
	_, _, err = p.Publish(t.Context(), ev)
	if !errors.Is(err, publish.ErrUnavailable) {
		t.Fatalf("Publish with answers held = %v, want ErrUnavailable", err)
	}
	if got := len(natstest.Messages(t, direct, "AYRSHARE")); got != 1 {
		t.Fatalf("after the timeout the stream holds %d messages, want the 1 the server stored", got)
	}
	proxy.Release()
	seq, dup, err := p.Publish(t.Context(), ev)
	if err != nil || !dup || seq != 1 {
		t.Fatalf("retry = %d %v %v, want seq 1, duplicate", seq, dup, err)
	}
	if got := len(natstest.Messages(t, direct, "AYRSHARE")); got != 1 {
		t.Fatalf("stream holds %d messages, want 1", got)
	}
}

// outcomes collects what PublishAsync reports, in the order the callbacks ran.
type outcomes struct {
	mu    sync.Mutex
	ok    int
	errs  []error
	order []string
}

func (o *outcomes) done(id string) func(error) {
	return func(err error) {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.order = append(o.order, id)
		if err != nil {
			o.errs = append(o.errs, err)
			return
		}
		o.ok++
	}
}

func (o *outcomes) counts() (int, []error, []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ok, o.errs, o.order
}

func streamMsgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return info.State.Msgs
}

func TestPublishAsyncStoresEachIDOnce(t *testing.T) {
	nc, js := newStream(t)
	p := newPublisher(t, nc, "AYRSHARE", publish.WithWindow(64))
	var o outcomes
	const n = 3000
	for round := range 2 { // the second round repeats every id: JetStream sees duplicates
		for i := range n {
			id := fmt.Sprint("id-", i)
			if err := p.PublishAsync(t.Context(), feed(t, id), o.done(id)); err != nil {
				t.Fatalf("round %d publish %d: %v", round, i, err)
			}
		}
		if err := p.Flush(t.Context()); err != nil {
			t.Fatalf("flush: %v", err)
		}
	}
	if err := p.Close(t.Context()); err != nil {
		t.Fatalf("close: %v", err)
	}
	ok, errs, _ := o.counts()
	if ok != 2*n || len(errs) != 0 {
		t.Fatalf("outcomes: %d ok, errors %v; want %d ok", ok, errs, 2*n)
	}
	if got := streamMsgs(t, js, "AYRSHARE"); got != n {
		t.Fatalf("stream holds %d messages, want %d", got, n)
	}
	if err := p.PublishAsync(t.Context(), feed(t, "late"), o.done("late")); !errors.Is(err, publish.ErrPublisherClosed) {
		t.Fatalf("publish after close: %v, want ErrPublisherClosed", err)
	}
}

// TestPublishAsyncRefusedEndsQuickly is the replay against a stream whose subjects do not cover
// ayrshare.>: every message is refused within seconds, each outcome is reported, and once
// enough failed in a row PublishAsync stops taking more.
func TestPublishAsyncRefusedEndsQuickly(t *testing.T) {
	ns := natstest.RunServer(t, "")
	nc, js := natstest.Connect(t, ns)
	if _, err := publish.EnsureStream(t.Context(), js, publish.StreamConfig{
		Name: "AYRSHARE", Subjects: []string{"other.>"}, Replicas: 1, DedupWindow: time.Hour,
	}); err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, nc, "AYRSHARE", publish.WithWindow(256), publish.WithTimeout(time.Minute), publish.WithMaxFailures(64))
	var o outcomes
	start := time.Now()
	sent := 0
	var stopped error
	for i := range 200 {
		id := fmt.Sprint("r", i)
		if stopped = p.PublishAsync(t.Context(), feed(t, id), o.done(id)); stopped != nil {
			break
		}
		sent++
	}
	if err := p.Flush(ctxTimeout(t, 30*time.Second)); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("200 refused messages took %s", took)
	}
	ok, errs, _ := o.counts()
	if ok != 0 || len(errs) != sent {
		t.Fatalf("outcomes: %d ok, %d errors for %d sent", ok, len(errs), sent)
	}
	for _, err := range errs {
		if !errors.Is(err, publish.ErrRefused) {
			t.Fatalf("outcome %v does not wrap ErrRefused", err)
		}
	}
	if sent == 200 {
		if err := p.PublishAsync(t.Context(), feed(t, "more"), o.done("more")); !errors.Is(err, publish.ErrUnavailable) {
			t.Fatalf("after 200 failures PublishAsync = %v, want ErrUnavailable", err)
		}
	} else if !errors.Is(stopped, publish.ErrUnavailable) {
		t.Fatalf("PublishAsync stopped with %v, want ErrUnavailable", stopped)
	}
}

// TestPublishAsyncRetryHoldsUpNoOther: a message the stream keeps refusing for a while (its
// subject is full) is retried on its own, while the messages after it are stored and reported.
func TestPublishAsyncRetryHoldsUpNoOther(t *testing.T) {
	ns := natstest.RunServer(t, "")
	nc, js := natstest.Connect(t, ns)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: "AYRSHARE", Subjects: []string{"ayrshare.>"}, Storage: jetstream.MemoryStorage,
		MaxMsgsPerSubject: 1, Discard: jetstream.DiscardNew, DiscardNewPerSubject: true, Duplicates: time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, nc, "AYRSHARE", publish.WithTimeout(1500*time.Millisecond))
	var o outcomes
	publishAsync := func(body, id string) {
		t.Helper()
		if err := p.PublishAsync(t.Context(), event(t, body), o.done(id)); err != nil {
			t.Fatal(err)
		}
	}
	publishAsync(`{"action":"feed","hookId":"first"}`, "first")
	publishAsync(`{"action":"feed","hookId":"blocked"}`, "blocked") // same subject: full
	for i := range 20 {
		publishAsync(fmt.Sprintf(`{"action":"feed","type":"t%d","hookId":"other-%d"}`, i, i), fmt.Sprint("other-", i))
	}
	if err := p.Flush(ctxTimeout(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	ok, errs, order := o.counts()
	if ok != 21 || len(errs) != 1 || !errors.Is(errs[0], publish.ErrUnavailable) {
		t.Fatalf("outcomes: %d ok, errors %v; want 21 ok and the blocked one unavailable", ok, errs)
	}
	if order[len(order)-1] != "blocked" {
		t.Fatalf("outcome order %v: the retried message held up the others", order)
	}
	if got := streamMsgs(t, js, "AYRSHARE"); got != 21 {
		t.Fatalf("stream holds %d, want 21", got)
	}
}

func TestNewPublisherOptions(t *testing.T) {
	nc, _ := newStream(t)
	if _, err := publish.NewPublisher(nil, "S"); err == nil {
		t.Error("nil connection accepted")
	}
	if _, err := publish.NewPublisher(nc, ""); err == nil {
		t.Error("empty stream accepted")
	}
	tests := map[string]publish.Option{
		"zero timeout":      publish.WithTimeout(0),
		"negative attempt":  publish.WithAttemptTimeout(-time.Second),
		"zero window":       publish.WithWindow(0),
		"zero ack wait":     publish.WithAckWait(0),
		"zero max failures": publish.WithMaxFailures(0),
	}
	for name, opt := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := publish.NewPublisher(nc, "AYRSHARE", opt); !errors.Is(err, jetstream.ErrInvalidOption) {
				t.Fatalf("err = %v, want ErrInvalidOption", err)
			}
		})
	}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// publishAll publishes ids from callers goroutines at once and returns each id's answer.
func publishAll(t *testing.T, p *publish.Publisher, ids []string, callers int) map[string]outcome {
	t.Helper()
	var mu sync.Mutex
	got := map[string]outcome{}
	work := make(chan string)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for id := range work {
				seq, dup, err := p.Publish(t.Context(), feed(t, id))
				mu.Lock()
				got[id] = outcome{seq, dup, err}
				mu.Unlock()
			}
		})
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	return got
}

// requireStoredAsAnswered checks that the stream holds each id once, at the sequence its caller
// was given.
func requireStoredAsAnswered(t *testing.T, js jetstream.JetStream, answers map[string]outcome) {
	t.Helper()
	at := map[uint64]string{}
	for _, m := range natstest.Messages(t, js, "AYRSHARE") {
		at[m.Sequence] = m.Header.Get(jetstream.MsgIDHeader)
	}
	ids := map[string]bool{}
	for _, id := range at {
		if ids[id] {
			t.Errorf("%s stored twice", id)
		}
		ids[id] = true
	}
	for id, o := range answers {
		if o.err != nil {
			t.Errorf("%s: %v", id, o.err)
		} else if at[o.seq] != id {
			t.Errorf("%s answered seq %d, which holds %q", id, o.seq, at[o.seq])
		}
	}
}

// TestPublishGroupsAsAtomicBatches runs concurrent callers against a real server with one
// committer, so groups form: they are stored as atomic batches, each caller is answered with
// its own message's sequence, and a group holding an id already stored (Ayrshare's redelivery)
// is refused as a batch and sent one by one, so that redelivery is answered as a duplicate.
func TestPublishGroupsAsAtomicBatches(t *testing.T) {
	nc, js := newStream(t)
	p := newPublisher(t, nc, "AYRSHARE", publish.WithGroupsInFlight(1), publish.WithMinBatch(2))
	var first, again []string
	for i := range 40 {
		first = append(first, fmt.Sprint("b", i))
	}
	stored := publishAll(t, p, first, 32)
	for i := range 400 {
		if i%10 == 0 {
			again = append(again, first[i/10]) // a redelivery among new events
		} else {
			again = append(again, fmt.Sprint("n", i))
		}
	}
	before := p.Stats()
	answers := publishAll(t, p, again, 32)
	for _, id := range first {
		if a := answers[id]; a.err != nil || !a.dup || a.seq != stored[id].seq {
			t.Errorf("redelivered %s = %+v, want duplicate at %d", id, a, stored[id].seq)
		}
		delete(answers, id)
	}
	maps.Copy(answers, stored)
	requireStoredAsAnswered(t, js, answers)
	s := p.Stats()
	t.Logf("stats %+v after the first %d, %+v in all", before, len(first), s)
	if s.Batches == 0 || s.Fallbacks == 0 || s.Events/s.Groups < 2 {
		t.Errorf("stats %+v: want groups of several, stored as batches, and refused batches sent one by one", s)
	}
}

// TestPublishStreamWithoutAtomicBatches publishes to a stream an operator made without
// allow_atomic: every event is stored once, one message at a time, after one warning.
func TestPublishStreamWithoutAtomicBatches(t *testing.T) {
	ns := natstest.RunServer(t, "")
	nc, js := natstest.Connect(t, ns)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: "AYRSHARE", Subjects: []string{"ayrshare.>"}, Storage: jetstream.FileStorage, Duplicates: time.Hour,
	}); err != nil {
		t.Fatal(err)
	}
	s, err := publish.EnsureStream(t.Context(), js, streamConfig())
	if err != nil {
		t.Fatal(err)
	}
	if s.CachedInfo().Config.AllowAtomicPublish {
		t.Fatal("EnsureStream turned allow_atomic on in a stream the bridge did not create")
	}
	var logs logtest.Buffer
	p := newPublisher(t, nc, "AYRSHARE", publish.WithGroupsInFlight(1), publish.WithMinBatch(2), publish.WithLogger(zerolog.New(&logs)))
	var ids []string
	for i := range 300 {
		ids = append(ids, fmt.Sprint("w", i))
	}
	requireStoredAsAnswered(t, js, publishAll(t, p, ids, 32))
	if st := p.Stats(); st.Batches != 0 || st.Fallbacks == 0 {
		t.Errorf("stats %+v: want no batch stored", st)
	}
	if n := strings.Count(logs.String(), "does not take atomic batches"); n != 1 {
		t.Errorf("warned %d times, want once:\n%s", n, logs.String())
	}
}
