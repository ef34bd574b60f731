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
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/internal/proctest"
	"github.com/ayrbridge/ayrbridge/publish"
)

func TestMain(m *testing.M) { proctest.Main(m) }

// outcome is one Publish call's answer.
type outcome struct {
	seq uint64
	dup bool
	err error
}

// acker stands in for JetStream: a core subscriber on the stream's subjects whose test decides
// how, when and whether each message is acknowledged.
type acker struct {
	t    *testing.T
	nc   *nats.Conn
	msgs chan *nats.Msg
}

func newAcker(t *testing.T, ns interface{ ClientURL() string }) *acker {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	a := &acker{t: t, nc: nc, msgs: make(chan *nats.Msg, 64)}
	if _, err := nc.ChanSubscribe("ayrshare.>", a.msgs); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return a
}

// next returns the next n messages published, by Nats-Msg-Id, and the ids in arrival order.
func (a *acker) next(n int) (map[string]*nats.Msg, []string) {
	a.t.Helper()
	got := map[string]*nats.Msg{}
	var order []string
	timeout := time.After(5 * time.Second)
	for len(order) < n {
		select {
		case m := <-a.msgs:
			id := m.Header.Get(jetstream.MsgIDHeader)
			got[id] = m
			order = append(order, id)
		case <-timeout:
			a.t.Fatalf("got %d messages %v, want %d", len(order), order, n)
		}
	}
	return got, order
}

// none checks that nothing more is published for a while.
func (a *acker) none(d time.Duration) {
	a.t.Helper()
	select {
	case m := <-a.msgs:
		a.t.Fatalf("unexpected message %s", m.Header.Get(jetstream.MsgIDHeader))
	case <-time.After(d):
	}
}

func (a *acker) reply(m *nats.Msg, body string) {
	a.t.Helper()
	if err := m.Respond([]byte(body)); err != nil {
		a.t.Fatal(err)
	}
}

// TestGroupAnswersEachCallerFromItsOwnAck holds the first group's ack so the next callers
// queue up into one group, which goes out as one atomic batch. The batch is refused as holding
// a duplicate, so the group is sent again one message at a time, and those are answered each
// differently: every caller gets its own message's outcome, a lost ack is sent again with the
// same id, and a caller whose deadline passes mid-group gives up without holding up the others.
func TestGroupAnswersEachCallerFromItsOwnAck(t *testing.T) {
	ns := natstest.RunServer(t, "")
	nc, _ := natstest.Connect(t, ns)
	a := newAcker(t, ns)
	p := newPublisher(t, nc, "AYRSHARE", publish.WithTimeout(5*time.Second), publish.WithAttemptTimeout(time.Second),
		publish.WithGroupsInFlight(1), publish.WithMinBatch(2))
	calls := newCalls(t, p)

	calls.start("first", t.Context())
	msgs, _ := a.next(1)
	if h := msgs["first"].Header.Get(jetstreamext.BatchIDHeader); h != "" {
		t.Errorf("a group of one went out as batch %s", h)
	}
	// The committer waits for first's ack: the others queue, in this order, for the next group.
	group := []string{"new", "dup", "refused", "gone", "lost"}
	for i, id := range group {
		ctx := t.Context()
		if id == "gone" {
			ctx = ctxTimeout(t, 400*time.Millisecond)
		}
		calls.start(id, ctx)
		natstest.Eventually(t, 5*time.Second, func() error {
			if w := p.Stats().Waiting; w != i+1 {
				return fmt.Errorf("%d calls waiting, want %d", w, i+1)
			}
			return nil
		})
	}
	a.reply(msgs["first"], `{"stream":"AYRSHARE","seq":1}`)
	if o := calls.result("first"); o.err != nil || o.seq != 1 || o.dup {
		t.Fatalf("first = %+v, want seq 1", o)
	}

	batch, order := a.next(len(group))
	if fmt.Sprint(order) != fmt.Sprint(group) {
		t.Errorf("the batch arrived as %v, want %v", order, group)
	}
	commit := requireBatch(t, batch, order)
	a.reply(commit, `{"error":{"code":400,"err_code":10201,"description":"batch publish contains duplicate message id (Nats-Msg-Id)"}}`)

	msgs, order = a.next(len(group))
	if fmt.Sprint(order) != fmt.Sprint(group) {
		t.Errorf("sent again one by one as %v, want %v", order, group)
	}
	for id, m := range msgs {
		if h := m.Header.Get(jetstreamext.BatchIDHeader); h != "" || m.Reply == "" {
			t.Errorf("%s sent again in batch %q, reply %q: want a plain publish", id, h, m.Reply)
		}
	}
	if s := p.Stats(); s.Groups != 2 || s.Events != 6 || s.Batches != 0 || s.Fallbacks != 1 {
		t.Errorf("stats %+v, want 6 events in 2 groups, one batch refused", s)
	}
	a.reply(msgs["new"], `{"stream":"AYRSHARE","seq":2}`)
	a.reply(msgs["dup"], `{"stream":"AYRSHARE","seq":1,"duplicate":true}`)
	a.reply(msgs["refused"], `{"error":{"code":400,"err_code":10060,"description":"expected stream does not match"}}`)
	// gone and lost get no ack.

	if o := calls.result("new"); o.err != nil || o.seq != 2 || o.dup {
		t.Errorf("new = %+v, want seq 2", o)
	}
	if o := calls.result("dup"); o.err != nil || o.seq != 1 || !o.dup {
		t.Errorf("dup = %+v, want seq 1, duplicate", o)
	}
	if o := calls.result("refused"); !errors.Is(o.err, publish.ErrRefused) {
		t.Errorf("refused = %+v, want ErrRefused", o)
	}
	if o := calls.result("gone"); !errors.Is(o.err, publish.ErrUnavailable) {
		t.Errorf("gone = %+v, want ErrUnavailable after its own deadline", o)
	}
	// lost's attempt ends a second after it was queued: it is sent again, with the same id.
	again, _ := a.next(1)
	m, ok := again["lost"]
	if !ok {
		t.Fatalf("sent again: %v, want lost", again)
	}
	if got := m.Header.Get(jetstream.ExpectedStreamHeader); got != "AYRSHARE" {
		t.Errorf("resent with Nats-Expected-Stream %q", got)
	}
	a.reply(m, `{"stream":"AYRSHARE","seq":3}`)
	if o := calls.result("lost"); o.err != nil || o.seq != 3 {
		t.Errorf("lost = %+v, want seq 3 on its second attempt", o)
	}
	a.none(200 * time.Millisecond)
}

// TestGroupBatchAnswersEachCaller commits a queued group as one batch: each caller gets its own
// message's place in the batch, which the server stores contiguously up to the acked sequence.
func TestGroupBatchAnswersEachCaller(t *testing.T) {
	ns := natstest.RunServer(t, "")
	nc, _ := natstest.Connect(t, ns)
	a := newAcker(t, ns)
	p := newPublisher(t, nc, "AYRSHARE", publish.WithGroupsInFlight(1), publish.WithMinBatch(2))
	calls := newCalls(t, p)
	calls.start("first", t.Context())
	held, _ := a.next(1)
	group := []string{"a", "b", "c"}
	for i, id := range group {
		calls.start(id, t.Context())
		natstest.Eventually(t, 5*time.Second, func() error {
			if w := p.Stats().Waiting; w != i+1 {
				return fmt.Errorf("%d calls waiting, want %d", w, i+1)
			}
			return nil
		})
	}
	a.reply(held["first"], `{"stream":"AYRSHARE","seq":7}`)
	batch, order := a.next(len(group))
	commit := requireBatch(t, batch, order)
	a.reply(commit, fmt.Sprintf(`{"stream":"AYRSHARE","seq":10,"batch":%q,"count":3}`, commit.Header.Get(jetstreamext.BatchIDHeader)))
	for i, id := range group {
		if o := calls.result(id); o.err != nil || o.dup || o.seq != uint64(8+i) {
			t.Errorf("%s = %+v, want seq %d", id, o, 8+i)
		}
	}
	if s := p.Stats(); s.Batches != 1 || s.Fallbacks != 0 {
		t.Errorf("stats %+v, want one batch", s)
	}
	a.none(200 * time.Millisecond)
}

// requireBatch checks that msgs (by id, in order) are one atomic batch, and returns its commit.
func requireBatch(t *testing.T, msgs map[string]*nats.Msg, order []string) *nats.Msg {
	t.Helper()
	id := msgs[order[0]].Header.Get(jetstreamext.BatchIDHeader)
	if id == "" {
		t.Fatalf("%s has no %s", order[0], jetstreamext.BatchIDHeader)
	}
	for i, mid := range order {
		h := msgs[mid].Header
		last := i == len(order)-1
		if h.Get(jetstreamext.BatchIDHeader) != id || h.Get(jetstreamext.BatchSeqHeader) != fmt.Sprint(i+1) ||
			(h.Get(jetstreamext.BatchCommitHeader) == "1") != last || (msgs[mid].Reply != "") != last {
			t.Fatalf("%s: batch %q seq %q commit %q reply %q; want batch %s seq %d, commit and reply on the last only",
				mid, h.Get(jetstreamext.BatchIDHeader), h.Get(jetstreamext.BatchSeqHeader), h.Get(jetstreamext.BatchCommitHeader), msgs[mid].Reply, id, i+1)
		}
		if h.Get(jetstream.MsgIDHeader) != mid || h.Get(jetstream.ExpectedStreamHeader) != "AYRSHARE" {
			t.Errorf("%s: Nats-Msg-Id %q, Nats-Expected-Stream %q", mid, h.Get(jetstream.MsgIDHeader), h.Get(jetstream.ExpectedStreamHeader))
		}
	}
	return msgs[order[len(order)-1]]
}

// calls runs Publish calls on their own goroutines and collects each one's outcome by id.
type calls struct {
	t       *testing.T
	p       *publish.Publisher
	mu      sync.Mutex
	results map[string]chan outcome
}

func newCalls(t *testing.T, p *publish.Publisher) *calls {
	return &calls{t: t, p: p, results: map[string]chan outcome{}}
}

func (c *calls) start(id string, ctx context.Context) {
	ch := make(chan outcome, 1)
	c.mu.Lock()
	c.results[id] = ch
	c.mu.Unlock()
	go func() {
		seq, dup, err := c.p.Publish(ctx, feed(c.t, id))
		ch <- outcome{seq, dup, err}
	}()
}

func (c *calls) result(id string) outcome {
	c.t.Helper()
	c.mu.Lock()
	ch := c.results[id]
	c.mu.Unlock()
	select {
	case o := <-ch:
		return o
	case <-time.After(5 * time.Second):
		c.t.Fatalf("no answer for %s", id)
		return outcome{}
	}
}

// TestGroupIdleCommitterTakesTheNextCall holds one committer's ack: with a second committer
// the next call is sent at once instead of waiting for that ack, and each gets its own answer.
func TestGroupIdleCommitterTakesTheNextCall(t *testing.T) {
	ns := natstest.RunServer(t, "")
	nc, _ := natstest.Connect(t, ns)
	a := newAcker(t, ns)
	p := newPublisher(t, nc, "AYRSHARE", publish.WithGroupsInFlight(2))
	publishIn := func(id string) <-chan outcome {
		ch := make(chan outcome, 1)
		go func() {
			seq, dup, err := p.Publish(t.Context(), feed(t, id))
			ch <- outcome{seq, dup, err}
		}()
		return ch
	}
	wait := func(ch <-chan outcome) outcome {
		t.Helper()
		select {
		case o := <-ch:
			return o
		case <-time.After(5 * time.Second):
			t.Fatal("no answer in 5s")
			return outcome{}
		}
	}
	first := publishIn("first")
	held, _ := a.next(1)
	second := publishIn("second")
	sent, _ := a.next(1) // with one committer this would time out: second waits for first's ack
	a.reply(sent["second"], `{"stream":"AYRSHARE","seq":2}`)
	if o := wait(second); o.err != nil || o.seq != 2 {
		t.Errorf("second = %+v, want seq 2 while first's ack is held", o)
	}
	a.reply(held["first"], `{"stream":"AYRSHARE","seq":1}`)
	if o := wait(first); o.err != nil || o.seq != 1 {
		t.Errorf("first = %+v, want seq 1", o)
	}
}

// TestGroupServerKilled kills nats-server (SIGKILL, a real process) while groups are in
// flight and starts it again: every event a caller was told is stored is in the stream, and no
// event is stored twice however often it was sent.
func TestGroupServerKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a nats-server process")
	}
	srv := natstest.StartServerProcess(t)
	nc, err := publish.Connect(publish.ConnConfig{URLs: []string{srv.URL}}, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := publish.EnsureStream(t.Context(), js, streamConfig()); err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, nc, "AYRSHARE")

	const callers = 32
	var (
		mu     sync.Mutex
		stored = map[string]uint64{} // id: the sequence its caller was given
		failed int
		wg     sync.WaitGroup
	)
	stop := make(chan struct{})
	for c := range callers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("k%d-%d", c, i)
				ctx, cancel := context.WithTimeout(t.Context(), time.Second)
				seq, dup, err := p.Publish(ctx, feed(t, id))
				cancel()
				mu.Lock()
				switch {
				case err != nil:
					failed++
				case dup:
					t.Errorf("%s: duplicate on its first publish", id)
				default:
					stored[id] = seq
				}
				mu.Unlock()
			}
		})
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(stored) }
	atLeast := func(n int) func() error {
		return func() error {
			if c := count(); c < n {
				return fmt.Errorf("%d stored, want %d", c, n)
			}
			return nil
		}
	}
	natstest.Eventually(t, 20*time.Second, atLeast(500))
	srv.Kill()
	before := count()
	time.Sleep(1500 * time.Millisecond) // down for longer than a caller waits: calls fail
	srv.Start()
	natstest.Eventually(t, 30*time.Second, atLeast(before+500))
	close(stop)
	wg.Wait()

	seen := map[string]uint64{}
	for _, m := range natstest.Messages(t, js, "AYRSHARE") {
		id := m.Header.Get(jetstream.MsgIDHeader)
		if prev, ok := seen[id]; ok {
			t.Errorf("%s stored twice: sequences %d and %d", id, prev, m.Sequence)
		}
		seen[id] = m.Sequence
	}
	for id, seq := range stored {
		if got, ok := seen[id]; !ok || got != seq {
			t.Errorf("%s answered as stored at %d, the stream has it at %d (present: %v)", id, seq, got, ok)
		}
	}
	t.Logf("%d stored, %d failed while the server was away, %d in the stream, %+v", len(stored), failed, len(seen), p.Stats())
	if failed == 0 || nc.Stats().Reconnects == 0 {
		t.Errorf("%d publishes failed, %d reconnects: the test did not test a fault", failed, nc.Stats().Reconnects)
	}
}
