package replay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ayrbridge/ayrbridge/schema"
)

// stream is a fake of the stream and the publisher in one: what is published is stored,
// except the ids in failOnce, which fail the first time.
type stream struct {
	mu       sync.Mutex
	ids      []string
	failOnce map[string]bool
}

func (s *stream) PublishAsync(_ context.Context, ev schema.Event, done func(error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failOnce[ev.ID] {
		delete(s.failOnce, ev.ID)
		done(errors.New("no ack"))
		return nil
	}
	s.ids = append(s.ids, ev.ID)
	done(nil)
	return nil
}

func (s *stream) Flush(context.Context) error { return nil }

func (s *stream) stored(_ context.Context, _ time.Time, fn func(string)) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range s.ids {
		fn(id)
	}
	return len(s.ids), nil
}

// history is a fake history endpoint whose content a test changes between passes.
type history struct {
	mu       sync.Mutex
	bodies   map[string][]byte // by Profile-Key; any other key gets 401
	requests []string          // the Profile-Key of each request
}

func (h *history) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	key := r.Header.Get("Profile-Key")
	h.requests = append(h.requests, key)
	body, ok := h.bodies[key]
	h.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"message":"Profile Key not valid"}`)
		return
	}
	w.Write(body)
}

func (h *history) set(key string, body []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.bodies[key] = body
}

func (h *history) asked() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.requests)
}

// passes runs RunEvery on a fake clock until n passes reported, calling between after each,
// and returns their summaries and errors.
func passes(t *testing.T, r *Replayer, job Job, n int, between func(pass int)) ([]Summary, []error) {
	t.Helper()
	var sums []Summary
	var errs []error
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		start := time.Now()
		err := r.RunEvery(ctx, job, Schedule{Every: time.Minute, Window: func(s time.Time) (time.Time, time.Time) {
			// The fake clock starts in 2000: keep the window on the payloads' dates.
			return now.Add(-24 * time.Hour).Add(s.Sub(start)), now.Add(s.Sub(start))
		}}, func(sum Summary, err error) {
			sums, errs = append(sums, sum), append(errs, err)
			if between != nil {
				between(len(sums))
			}
			if len(sums) == n {
				cancel()
			}
		})
		if err != nil {
			t.Errorf("RunEvery: %v", err)
		}
	})
	return sums, errs
}

func newScheduled(t *testing.T, h *history, s *stream) (*Replayer, *Metrics) {
	t.Helper()
	srv := httptest.NewServer(h) // outside the bubble: it waits on the network
	t.Cleanup(srv.Close)
	m, err := NewMetrics(prometheus.NewRegistry(), now)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(srv.URL, "key", WithRetries(0), WithClientMetrics(m),
		WithHTTPClient(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}))
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(c, s.stored, s, WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	return r, m
}

func TestRunEveryFillsWhatIsNewAndCountsEachLossOnce(t *testing.T) {
	a, b, c := payload("social", "a", now.Add(-time.Hour)), payload("social", "b", now.Add(-time.Hour)), payload("social", "c", now.Add(-time.Minute))
	h := &history{bodies: map[string][]byte{"": historyJSON(group{"social", [][]byte{a, b}})}}
	s := &stream{failOnce: map[string]bool{"b": true}}
	r, m := newScheduled(t, h, s)
	sums, errs := passes(t, r, Job{Profiles: Profiles(nil)}, 4, func(pass int) {
		if pass == 1 { // the history grows between two passes
			h.set("", historyJSON(group{"social", [][]byte{a, b, c}}))
		}
	})
	want := []Counts{
		{InHistory: 2, Missing: 2, NewlyMissing: 2, Published: 1, Failed: 1},   // b is not acknowledged
		{InHistory: 3, InStream: 1, Missing: 2, NewlyMissing: 1, Published: 2}, // b again, and the new c
		{InHistory: 3, InStream: 3},
		{InHistory: 3, InStream: 3},
	}
	for i, sum := range sums {
		if sum.Total != want[i] || errs[i] != nil {
			t.Errorf("pass %d: %+v, %v; want %+v", i+1, sum.Total, errs[i], want[i])
		}
	}
	if slices.Sort(s.ids); !slices.Equal(s.ids, []string{"a", "b", "c"}) {
		t.Errorf("stream holds %v, want a, b, c once each", s.ids)
	}
	for name, tc := range map[string]struct {
		c    prometheus.Collector
		want float64
	}{
		"missing social":   {m.missing.WithLabelValues("social"), 3},
		"published social": {m.published.WithLabelValues("social"), 3},
		"failed social":    {m.failed.WithLabelValues("social"), 1},
		"missing feed":     {m.missing.WithLabelValues("feed"), 0},
		"passes ok":        {m.passes.WithLabelValues("ok"), 3},
		"passes error":     {m.passes.WithLabelValues("error"), 1},
		"requests 200":     {m.requests.WithLabelValues("200"), 4},
		"interval":         {m.interval, 60},
		"profiles":         {m.profiles, 1},
		"stopped":          {m.stopped, 0},
	} {
		if got := testutil.ToFloat64(tc.c); got != tc.want {
			t.Errorf("%s = %v, want %v", name, got, tc.want)
		}
	}
	// Four passes a minute apart from the fake clock's start; the last success is the last pass.
	if got, want := testutil.ToFloat64(m.lastSuccess), float64(time.Date(2000, 1, 1, 0, 3, 0, 0, time.UTC).Unix()); got != want {
		t.Errorf("last success %v, want %v", got, want)
	}
	// Every labelled series an alert reads exists before anything happened.
	if n := testutil.CollectAndCount(m.missing); n != len(schema.Actions())+1 {
		t.Errorf("%d missing-events series, want one per documented action and other", n)
	}
}

func TestRunEveryStopsRefusedProfiles(t *testing.T) {
	body := historyJSON(group{"social", [][]byte{payload("social", "a", now.Add(-time.Hour))}})
	good, bad := "GOODPROFILEKEY-0123456", "BADPROFILEKEY-01234567"
	h := &history{bodies: map[string][]byte{good: body}}
	r, m := newScheduled(t, h, &stream{})
	sums, errs := passes(t, r, Job{Profiles: Profiles([]string{good, bad})}, 3, nil)
	if !errors.Is(errs[0], ErrUnauthorized) || !slices.Equal(sums[0].Refused, []string{"profile 2 (BADP…)"}) {
		t.Fatalf("pass 1: %v, refused %v: want profile 2 refused", errs[0], sums[0].Refused)
	}
	if errs[1] != nil || errs[2] != nil || sums[1].Total.InStream != 1 {
		t.Fatalf("passes 2 and 3: %v, %v, %+v: want the good profile alone, without error", errs[1], errs[2], sums[1].Total)
	}
	if got := h.asked(); !slices.Equal(got, []string{good, bad, good, good}) {
		t.Errorf("requests for %v: the refused profile must not be asked again", got)
	}
	if got := testutil.ToFloat64(m.stopped); got != 1 {
		t.Errorf("profiles stopped = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("401")); got != 1 {
		t.Errorf("401 requests = %v, want 1", got)
	}

	t.Run("every profile refused", func(t *testing.T) {
		h := &history{bodies: map[string][]byte{}}
		r, m := newScheduled(t, h, &stream{})
		_, errs := passes(t, r, Job{Profiles: Profiles([]string{bad})}, 3, nil)
		if !errors.Is(errs[0], ErrUnauthorized) || !errors.Is(errs[1], ErrAllRefused) || !errors.Is(errs[2], ErrAllRefused) {
			t.Fatalf("errors %v: want the refusal, then nothing left to read", errs)
		}
		if n := len(h.asked()); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
		if got := testutil.ToFloat64(m.passes.WithLabelValues("error")); got != 3 {
			t.Errorf("error passes = %v, want 3: a replay with nothing to read is failing", got)
		}
	})
}

func TestRunEveryRefusesBadSchedules(t *testing.T) {
	r, _ := newScheduled(t, &history{}, &stream{})
	job := Job{Profiles: Profiles(nil), Since: now.Add(-time.Hour), Until: now}
	if err := r.RunEvery(t.Context(), job, Schedule{}, nil); !errors.Is(err, ErrInvalidJob) {
		t.Errorf("no interval: %v, want ErrInvalidJob", err)
	}
	job.Profiles = nil
	if err := r.RunEvery(t.Context(), job, Schedule{Every: time.Second}, nil); !errors.Is(err, ErrInvalidJob) {
		t.Errorf("no profile: %v, want ErrInvalidJob", err)
	}
}

// TestSingleRunRemembersNothing: only a continuous replay keeps the ids it found missing; a
// single dry run over a large gap would otherwise hold every one of them.
func TestSingleRunRemembersNothing(t *testing.T) {
	body := historyJSON(group{"social", [][]byte{payload("social", "a", now.Add(-time.Hour)), payload("social", "b", now.Add(-time.Hour))}})
	r, _ := newScheduled(t, &history{bodies: map[string][]byte{"": body}}, &stream{})
	sum, err := r.Run(t.Context(), Job{Profiles: Profiles(nil), Since: now.Add(-24 * time.Hour), Until: now, DryRun: true})
	if err != nil || sum.Total.NewlyMissing != 2 {
		t.Fatalf("%+v, %v: want 2 newly missing", sum.Total, err)
	}
	if n := len(r.unresolved); n != 0 {
		t.Errorf("a single run remembers %d ids", n)
	}
}
