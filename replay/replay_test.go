package replay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/publish/cenats"
	"github.com/ayrbridge/ayrbridge/schema"
)

var now = time.Date(2025, 9, 10, 12, 0, 0, 0, time.UTC)

// payload is a realistic webhook body; the postIds id is beyond 2^64, so any float or int
// round trip would change it.
func payload(action, hookID string, created time.Time) []byte {
	return fmt.Appendf(nil, `{"action":%q,"created":%q,"hookId":%q,"platform":"tiktok","postIds":[{"id":75470221586947310221234,"status":"success"}],"refId":"9abf1426d6ce9122ef11c72bd62e59807c5cc083","timeStamp":%d,"title":"Primary Profile","type":"link","url":"https://example.com/hook"}`,
		action, created.Format(time.RFC3339), hookID, created.Unix())
}

// group is one action's array in a history response.
type group struct {
	action string
	items  [][]byte
}

func historyJSON(groups ...group) []byte {
	var b bytes.Buffer
	b.WriteString("{")
	for i, g := range groups {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "%q:[", g.action)
		b.Write(bytes.Join(g.items, []byte(",\n")))
		b.WriteString("]")
	}
	b.WriteString("}")
	return b.Bytes()
}

// memSink stores what is published; fail decides a message's outcome.
type memSink struct {
	mu     sync.Mutex
	msgs   []schema.Event
	fail   func(schema.Event) error
	refuse error // returned by Publish once set
	hold   bool  // never report outcomes
}

func (s *memSink) PublishAsync(_ context.Context, msg schema.Event, done func(error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuse != nil {
		return s.refuse
	}
	s.msgs = append(s.msgs, msg)
	if s.hold {
		return nil
	}
	var err error
	if s.fail != nil {
		err = s.fail(msg)
	}
	done(err)
	return nil
}

func (s *memSink) Flush(ctx context.Context) error {
	if s.hold {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (s *memSink) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for _, m := range s.msgs {
		ids = append(ids, m.ID)
	}
	return ids
}

// storedIDs fakes the stream: it reports ids and records the since it was asked for.
func storedIDs(asked *time.Time, ids ...string) StoredIDs {
	return func(_ context.Context, since time.Time, fn func(string)) (int, error) {
		*asked = since
		for _, id := range ids {
			fn(id)
		}
		return len(ids), nil
	}
}

// historyServer answers every profile with the body registered for its Profile-Key.
func historyServer(t *testing.T, bodies map[string][]byte) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := bodies[r.Header.Get("Profile-Key")]
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"message":"Profile Key not found"}`)
			return
		}
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, "key", WithBackoff(time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRunCountsAndFilters(t *testing.T) {
	since, until := now.Add(-72*time.Hour), now
	in := func(h int) time.Time { return now.Add(-time.Duration(h) * time.Hour) }
	body := historyJSON(
		group{"social", [][]byte{
			payload("social", "s1", in(1)),
			payload("social", "s2", in(2)),      // already stored
			payload("social", "s-old", in(100)), // before since
			payload("social", "s-new", in(-1)),  // after until
			payload("social", "s1", in(1)),      // the same event twice in the history
			[]byte(`{"action":"social","created":"yesterday","hookId":"s-undated"}`),
			[]byte(`{"created":"2025-09-09T00:00:00Z","hookId":"no-action"}`), // the bridge refuses it too
		}},
		group{"scheduled", [][]byte{
			payload("scheduled", "p1", in(3)),
			payload("scheduled", "p2", in(4)),
		}},
		group{"feed", [][]byte{payload("feed", "f1", in(5))}},
	)
	tests := map[string]struct {
		job       Job
		published []string
		total     Counts
		actions   []string
	}{
		"all actions": {
			job:       Job{Since: since, Until: until},
			published: []string{"s1", "p1", "p2", "f1"},
			total:     Counts{InHistory: 7, InStream: 2, Missing: 4, NewlyMissing: 4, Published: 4, Failed: 1, Invalid: 1, OutsideWindow: 3},
			actions:   []string{"feed", "scheduled", "social"},
		},
		"one action": {
			job:       Job{Since: since, Until: until, Actions: []string{"scheduled"}},
			published: []string{"p1", "p2"},
			total:     Counts{InHistory: 2, Missing: 2, NewlyMissing: 2, Published: 2},
			actions:   []string{"scheduled"},
		},
		"two actions": {
			job:       Job{Since: since, Until: until, Actions: []string{"feed", "social"}},
			published: []string{"f1", "s1"}, // in the order of the requests
			total:     Counts{InHistory: 5, InStream: 2, Missing: 2, NewlyMissing: 2, Published: 2, Failed: 1, Invalid: 1, OutsideWindow: 3},
			actions:   []string{"feed", "social"},
		},
		"narrow window": {
			job:       Job{Since: in(3).Add(-time.Minute), Until: in(2).Add(time.Minute)},
			published: []string{"p1"},
			// The invalid payload is outside the window too: the window filter comes first.
			total:   Counts{InHistory: 2, InStream: 1, Missing: 1, NewlyMissing: 1, Published: 1, OutsideWindow: 8},
			actions: []string{"feed", "scheduled", "social"},
		},
		"dry run": {
			job:     Job{Since: since, Until: until, DryRun: true},
			total:   Counts{InHistory: 7, InStream: 2, Missing: 4, NewlyMissing: 4, Failed: 1, Invalid: 1, OutsideWindow: 3},
			actions: []string{"feed", "scheduled", "social"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			sink := &memSink{}
			var asked time.Time
			r, err := New(historyServer(t, map[string][]byte{"": body}), storedIDs(&asked, "s2", "unrelated"), sink)
			if err != nil {
				t.Fatal(err)
			}
			tc.job.Profiles = Profiles(nil)
			sum, err := r.Run(t.Context(), tc.job)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(sink.ids()) != fmt.Sprint(tc.published) {
				t.Errorf("published %v, want %v", sink.ids(), tc.published)
			}
			if sum.Total != tc.total {
				t.Errorf("total %+v\n want %+v", sum.Total, tc.total)
			}
			if actions := slices.Sorted(maps.Keys(sum.Actions)); fmt.Sprint(actions) != fmt.Sprint(tc.actions) {
				t.Errorf("actions %v, want %v", actions, tc.actions)
			}
			if want := tc.job.Since.Add(-time.Hour); !asked.Equal(want) {
				t.Errorf("stream read from %s, want since minus the margin, %s", asked, want)
			}
			if sum.StoredIDs != 2 || sum.Interrupted || len(sum.Errors) != 0 {
				t.Errorf("summary %+v", sum)
			}
		})
	}
}

// TestRunMessageIsTheBridgeMessage checks that a replayed message is what schema.NewEvent makes
// of the same bytes, plus ce-replayed.
func TestRunMessageIsTheBridgeMessage(t *testing.T) {
	items := [][]byte{
		payload("scheduled", "p1", now.Add(-time.Hour)),
		[]byte(`{"action":"messages","subAction":"messageCreated","created":"2025-09-10T10:00:00Z","refId":"r/1","platform":"instagram","id":18446744073709551617}`),
	}
	sink := &memSink{}
	var asked time.Time
	r, err := New(historyServer(t, map[string][]byte{"": historyJSON(group{"scheduled", items[:1]}, group{"messages", items[1:]})}),
		storedIDs(&asked), sink)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(t.Context(), Job{Profiles: Profiles(nil), Since: now.Add(-24 * time.Hour), Until: now}); err != nil {
		t.Fatal(err)
	}
	if len(sink.msgs) != len(items) {
		t.Fatalf("%d messages, want %d", len(sink.msgs), len(items))
	}
	for i, body := range items {
		want, err := schema.NewEvent(body, schema.Meta{Replayed: true})
		if err != nil {
			t.Fatal(err)
		}
		got := sink.msgs[i]
		if got.Subject != want.Subject || !bytes.Equal(got.Data, body) {
			t.Errorf("message %d: subject %q data %s\nwant %q %s", i, got.Subject, got.Data, want.Subject, body)
		}
		if g, w := cenats.Header(got), cenats.Header(want); fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("message %d headers\n got %v\nwant %v", i, g, w)
		}
	}
}

func TestRunProfiles(t *testing.T) {
	in := now.Add(-time.Hour)
	bodies := map[string][]byte{
		"KEY-A-0000000000000": historyJSON(group{"social", [][]byte{payload("social", "a1", in)}}),
		"KEY-B-0000000000000": historyJSON(group{"social", [][]byte{payload("social", "b1", in)}}),
		"KEY-M-0000000000000": []byte(`{"social":[` + string(payload("social", "m1", in)) + `,{"broken"`),
	}
	sink := &memSink{}
	var asked time.Time
	r, err := New(historyServer(t, bodies), storedIDs(&asked), sink)
	if err != nil {
		t.Fatal(err)
	}
	job := Job{Since: now.Add(-24 * time.Hour), Until: now,
		Profiles: Profiles([]string{"KEY-A-0000000000000", "KEY-UNKNOWN-0000000", "KEY-M-0000000000000", "KEY-B-0000000000000"})}
	sum, err := r.Run(t.Context(), job)
	if !errors.Is(err, ErrUnauthorized) || !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want the unknown profile's 401 and the malformed history", err)
	}
	for _, want := range []string{"profile 2 (KEY-…)", "profile 3 (KEY-…)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	// The good profiles ran, and so did what the malformed response held before it broke.
	if got := fmt.Sprint(sink.ids()); got != "[a1 m1 b1]" {
		t.Errorf("published %s, want [a1 m1 b1]", got)
	}
	if len(sum.Errors) != 2 || sum.Total.Published != 3 {
		t.Errorf("summary %+v", sum)
	}
}

func TestRunPublishFailures(t *testing.T) {
	items := [][]byte{payload("social", "ok", now.Add(-time.Hour)), payload("social", "bad", now.Add(-time.Hour))}
	body := historyJSON(group{"social", items})
	job := Job{Profiles: Profiles(nil), Since: now.Add(-24 * time.Hour), Until: now}
	var asked time.Time

	t.Run("failed events are counted", func(t *testing.T) {
		sink := &memSink{fail: func(m schema.Event) error {
			if m.ID == "bad" {
				return errors.New("no ack")
			}
			return nil
		}}
		r, _ := New(historyServer(t, map[string][]byte{"": body}), storedIDs(&asked), sink)
		sum, err := r.Run(t.Context(), job)
		if err != nil {
			t.Fatal(err)
		}
		if want := (Counts{InHistory: 2, Missing: 2, NewlyMissing: 2, Published: 1, Failed: 1}); sum.Total != want {
			t.Fatalf("total %+v, want %+v", sum.Total, want)
		}
	})
	t.Run("a sink that gives up stops the run", func(t *testing.T) {
		sink := &memSink{refuse: errors.New("jetstream unavailable")}
		r, _ := New(historyServer(t, map[string][]byte{"": body}), storedIDs(&asked), sink)
		sum, err := r.Run(t.Context(), Job{Profiles: Profiles([]string{"", ""}), Since: job.Since, Until: job.Until})
		if !errors.Is(err, errSinkGaveUp) {
			t.Fatalf("err = %v, want the sink's refusal", err)
		}
		if sum.Total.Missing != 1 || sum.Total.Failed != 1 {
			t.Fatalf("total %+v: want the one refused event failed and the rest not read", sum.Total)
		}
	})
	t.Run("interrupted while waiting for acks", func(t *testing.T) {
		sink := &memSink{hold: true}
		r, _ := New(historyServer(t, map[string][]byte{"": body}), storedIDs(&asked), sink, WithFlushGrace(time.Millisecond))
		ctx, cancel := context.WithCancel(t.Context())
		type result struct {
			sum Summary
			err error
		}
		done := make(chan result, 1)
		go func() {
			sum, err := r.Run(ctx, job)
			done <- result{sum, err}
		}()
		// Cancel once both events are handed to the sink: the run then only waits for acks.
		natstest.Eventually(t, 10*time.Second, func() error {
			if n := len(sink.ids()); n < 2 {
				return fmt.Errorf("%d events handed to the sink, want 2", n)
			}
			return nil
		})
		cancel()
		res := <-done
		sum, err := res.sum, res.err
		if err == nil || !sum.Interrupted {
			t.Fatalf("err %v, interrupted %v: want an interrupted run", err, sum.Interrupted)
		}
		if sum.Total.Failed != 2 || sum.Total.Published != 0 {
			t.Fatalf("total %+v: unconfirmed events must count as failed", sum.Total)
		}
	})
}

func TestRunRefusesBadJobs(t *testing.T) {
	var asked time.Time
	c := historyServer(t, nil)
	tests := map[string]struct {
		sink Sink
		job  Job
	}{
		"no profile":       {&memSink{}, Job{Since: now.Add(-time.Hour), Until: now}},
		"empty window":     {&memSink{}, Job{Profiles: Profiles(nil), Since: now, Until: now}},
		"no sink, no dry":  {nil, Job{Profiles: Profiles(nil), Since: now.Add(-time.Hour), Until: now}},
		"zero since/until": {&memSink{}, Job{Profiles: Profiles(nil)}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r, err := New(c, storedIDs(&asked), tc.sink)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.Run(t.Context(), tc.job); !errors.Is(err, ErrInvalidJob) {
				t.Fatalf("err = %v, want ErrInvalidJob", err)
			}
		})
	}
}

func TestRunInterruptedBeforeHistory(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	stored := func(context.Context, time.Time, func(string)) (int, error) {
		cancel() // Ctrl-C once the stream is read
		return 0, nil
	}
	body := historyJSON(group{"social", [][]byte{payload("social", "s1", now.Add(-time.Hour))}})
	sink := &memSink{}
	r, _ := New(historyServer(t, map[string][]byte{"": body}), stored, sink)
	sum, err := r.Run(ctx, Job{Profiles: Profiles([]string{"", ""}), Since: now.Add(-24 * time.Hour), Until: now})
	if !errors.Is(err, context.Canceled) || !sum.Interrupted || len(sum.Errors) != 1 {
		t.Fatalf("err %v, summary %+v: want one context.Canceled and interrupted", err, sum)
	}
	if len(sink.msgs) != 0 {
		t.Fatalf("published %d after the interruption", len(sink.msgs))
	}
}
