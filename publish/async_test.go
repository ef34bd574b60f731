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

	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/publish"
)

// newStream starts a server with the bridge's stream and returns a connection to it.
func newStream(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	ns := natstest.RunServer(t, "")
	nc, js := natstest.Connect(t, ns)
	_, err := publish.EnsureStream(t.Context(), js, publish.StreamConfig{
		Name: "AYRSHARE", Subjects: []string{"ayrshare.>"}, Replicas: 1, DedupWindow: time.Hour,
	})
	if err != nil {
		t.Fatalf("ensure stream: %v", err)
	}
	return nc, js
}

func msgWithID(subject, id string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set(nats.MsgIdHdr, id)
	m.Data = []byte(`{"id":"` + id + `"}`)
	return m
}

// outcomes collects what an AsyncPublisher reports.
type outcomes struct {
	mu   sync.Mutex
	ok   int
	errs []error
}

func (o *outcomes) done(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		o.errs = append(o.errs, err)
		return
	}
	o.ok++
}

func (o *outcomes) counts() (int, []error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ok, o.errs
}

func streamMsgs(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(t.Context(), "AYRSHARE")
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return info.State.Msgs
}

func TestAsyncPublisherStoresEachIDOnce(t *testing.T) {
	nc, js := newStream(t)
	p, err := publish.NewAsyncPublisher(nc, "AYRSHARE", publish.WithWindow(64))
	if err != nil {
		t.Fatal(err)
	}
	var o outcomes
	const n = 3000
	for round := range 2 { // the second round repeats every id: JetStream sees duplicates
		for i := range n {
			if err := p.Publish(t.Context(), msgWithID("ayrshare.test.none", fmt.Sprint("id-", i)), o.done); err != nil {
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
	ok, errs := o.counts()
	if ok != 2*n || len(errs) != 0 {
		t.Fatalf("outcomes: %d ok, errors %v; want %d ok", ok, errs, 2*n)
	}
	if got := streamMsgs(t, js); got != n {
		t.Fatalf("stream holds %d messages, want %d", got, n)
	}
	if err := p.Publish(t.Context(), msgWithID("ayrshare.test.none", "late"), o.done); !errors.Is(err, publish.ErrPublisherClosed) {
		t.Fatalf("publish after close: %v, want ErrPublisherClosed", err)
	}
}

func TestAsyncPublisherGivesUpOnDeadSubject(t *testing.T) {
	nc, _ := newStream(t)
	p, err := publish.NewAsyncPublisher(nc, "AYRSHARE", publish.WithWindow(4),
		publish.WithAckWait(50*time.Millisecond), publish.WithRetryTimeout(50*time.Millisecond), publish.WithMaxFailures(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	var o outcomes
	var refused error
	for i := range 100 { // no stream binds "other.>": every publish fails
		if err := p.Publish(t.Context(), msgWithID("other.subject", fmt.Sprint(i)), o.done); err != nil {
			refused = err
			break
		}
	}
	if !errors.Is(refused, publish.ErrUnavailable) {
		t.Fatalf("publish kept accepting messages (last error %v), want ErrUnavailable after 3 failures", refused)
	}
	if err := p.Flush(t.Context()); err != nil {
		t.Fatalf("flush: %v", err)
	}
	ok, errs := o.counts()
	if ok != 0 || len(errs) < 3 {
		t.Fatalf("outcomes: %d ok, %d errors; want 0 ok and at least 3 errors", ok, len(errs))
	}
	for _, err := range errs {
		if !errors.Is(err, publish.ErrUnavailable) {
			t.Fatalf("outcome %v does not wrap ErrUnavailable", err)
		}
	}
}

func TestAsyncPublisherOptions(t *testing.T) {
	nc, _ := newStream(t)
	tests := map[string]publish.AsyncOption{
		"zero window":       publish.WithWindow(0),
		"zero ack wait":     publish.WithAckWait(0),
		"negative retry":    publish.WithRetryTimeout(-time.Second),
		"zero max failures": publish.WithMaxFailures(0),
	}
	for name, opt := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := publish.NewAsyncPublisher(nc, "AYRSHARE", opt); !errors.Is(err, jetstream.ErrInvalidOption) {
				t.Fatalf("err = %v, want ErrInvalidOption", err)
			}
		})
	}
}
