package publish_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/publish"
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

func newPublisher(t testing.TB, js jetstream.JetStream, opts ...publish.Option) *publish.Publisher {
	t.Helper()
	if _, err := publish.EnsureStream(t.Context(), js, streamConfig()); err != nil {
		t.Fatal(err)
	}
	p, err := publish.NewPublisher(js, "AYRSHARE", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPublishStoresOnceWithHeaders(t *testing.T) {
	ns := natstest.RunServer(t, "")
	_, js := natstest.Connect(t, ns)
	p := newPublisher(t, js)
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
	for k, v := range ev.Header() {
		if got := m.Header.Get(k); got != v[0] {
			t.Errorf("stored header %s = %q, want %q", k, got, v[0])
		}
	}
}

func TestPublishConcurrent(t *testing.T) {
	ns := natstest.RunServer(t, "")
	_, js := natstest.Connect(t, ns)
	p := newPublisher(t, js)
	const n = 500
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			// Every id twice, at once: JetStream must keep one of each.
			ev := event(t, fmt.Sprintf(`{"action":"feed","hookId":"c%d"}`, i/2))
			if _, _, err := p.Publish(t.Context(), ev); err != nil {
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

func TestPublishUnavailable(t *testing.T) {
	ns := natstest.RunServer(t, "")
	_, js := natstest.Connect(t, ns)
	// No stream: nothing answers on the subject.
	p, err := publish.NewPublisher(js, "AYRSHARE", publish.WithTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = p.Publish(t.Context(), event(t, `{"action":"feed"}`))
	if !errors.Is(err, publish.ErrUnavailable) {
		t.Fatalf("Publish without a stream = %v, want ErrUnavailable", err)
	}
	if err := p.Ready(t.Context()); !errors.Is(err, publish.ErrUnavailable) {
		t.Fatalf("Ready without a stream = %v", err)
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
	p := newPublisher(t, js, publish.WithTimeout(500*time.Millisecond))
	if _, _, err := p.Publish(t.Context(), event(t, `{"action":"feed","hookId":"before"}`)); err != nil {
		t.Fatal(err)
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	start := time.Now()
	_, _, err = p.Publish(t.Context(), event(t, `{"action":"feed","hookId":"during"}`))
	if !errors.Is(err, publish.ErrUnavailable) {
		t.Fatalf("Publish while down = %v, want ErrUnavailable", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("Publish while down returned after %s, not within its timeout", waited)
	}
	if err := p.Ready(t.Context()); err == nil {
		t.Fatal("Ready while the server is down")
	}

	natstest.RunServerAt(t, dir, addr)
	if err := publish.WaitConnected(t.Context(), nc); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error { return p.Ready(t.Context()) })
	seq, _, err := p.Publish(t.Context(), event(t, `{"action":"feed","hookId":"after"}`))
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
	js, _ := jetstream.New(nc)
	p, err := publish.NewPublisher(js, "AYRSHARE", publish.WithTimeout(400*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
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

func TestNewPublisherOptions(t *testing.T) {
	ns := natstest.RunServer(t, "")
	_, js := natstest.Connect(t, ns)
	if _, err := publish.NewPublisher(nil, "S"); err == nil {
		t.Error("nil JetStream accepted")
	}
	if _, err := publish.NewPublisher(js, ""); err == nil {
		t.Error("empty stream accepted")
	}
	if _, err := publish.NewPublisher(js, "S", publish.WithTimeout(0)); !errors.Is(err, jetstream.ErrInvalidOption) {
		t.Errorf("zero timeout: %v", err)
	}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestParseAck(t *testing.T) {
	tests := map[string]struct {
		ack     string
		seq     uint64
		dup, ok bool
	}{
		"hand-written":       {`{"stream":"AYRSHARE","seq":42}`, 42, false, true},
		"hand-written dup":   {`{"stream":"AYRSHARE","seq":42,"duplicate": true}`, 42, true, true},
		"with domain":        {`{"stream":"AYRSHARE","domain":"edge","seq":7}`, 7, false, true},
		"encoding/json dup":  {`{"stream":"AYRSHARE","seq":9,"duplicate":true}`, 9, true, true},
		"spaced":             {`{"stream": "AYRSHARE", "seq": 11, "duplicate": false}`, 11, false, true},
		"stream named seq":   {`{"stream":"seq","seq":3}`, 3, false, true},
		"api error":          {`{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}`, 0, false, false},
		"not json":           {`+OK`, 0, false, false},
		"no sequence":        {`{"stream":"AYRSHARE"}`, 0, false, false},
		"sequence not digit": {`{"stream":"AYRSHARE","seq":"x"}`, 0, false, false},
	}
	for name, tt := range tests {
		seq, dup, err := publish.ParseAck([]byte(tt.ack))
		if (err == nil) != tt.ok || seq != tt.seq || dup != tt.dup {
			t.Errorf("%s: ParseAck(%s) = %d %v %v", name, tt.ack, seq, dup, err)
		}
	}
}
