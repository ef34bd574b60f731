package replay

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/ayrbridge/ayrbridge/internal/logtest"
)

// reply is one scripted answer of the fake history endpoint.
type reply struct {
	status int
	header map[string]string
	body   string
	hangup bool // close the connection without an answer
	stall  bool // send nothing until the client gives up
}

// script serves replies in order (the last one repeats) and records every request.
type script struct {
	mu       sync.Mutex
	replies  []reply
	requests []*http.Request
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	n := len(s.requests)
	s.requests = append(s.requests, r.Clone(context.Background()))
	rep := s.replies[min(n, len(s.replies)-1)]
	s.mu.Unlock()
	switch {
	case rep.hangup:
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	case rep.stall:
		<-r.Context().Done()
		return
	}
	for k, v := range rep.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(rep.status)
	io.WriteString(w, rep.body)
}

func (s *script) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// testClient returns a client of srv and what it logged it would wait before each retry.
// Connections are not kept alive, so that inside a synctest bubble no goroutine stays
// blocked on the network and the fake clock can run.
func testClient(t *testing.T, srv *httptest.Server, opts ...ClientOption) (*Client, func() []time.Duration) {
	t.Helper()
	var logs logtest.Buffer
	opts = append([]ClientOption{
		WithBackoff(100*time.Millisecond, 10*time.Second), WithRetries(4),
		WithHTTPClient(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}),
		WithClientLogger(zerolog.New(&logs)),
	}, opts...)
	c, err := NewClient(srv.URL, "api-key-secret", opts...)
	if err != nil {
		t.Fatal(err)
	}
	waits := func() []time.Duration {
		var out []time.Duration
		for line := range strings.Lines(logs.String()) {
			var entry struct {
				RetryIn *float64 `json:"retry_in"` // zerolog writes durations in milliseconds
			}
			if err := json.Unmarshal([]byte(line), &entry); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			if entry.RetryIn != nil {
				out = append(out, time.Duration(*entry.RetryIn*float64(time.Millisecond)))
			}
		}
		return out
	}
	return c, waits
}

func TestHistoryRequest(t *testing.T) {
	s := &script{replies: []reply{{status: 200, body: `{}`}}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	c, _ := testClient(t, srv)
	tests := map[string]struct {
		profile    Profile
		action     string
		wantKey    string
		wantAction string
	}{
		"primary, all actions": {Profiles(nil)[0], "", "", ""},
		"profile, one action":  {Profiles([]string{"PROFILE-KEY-0123456789"})[0], "social", "PROFILE-KEY-0123456789", "social"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rc, err := c.History(t.Context(), tc.profile, tc.action)
			if err != nil {
				t.Fatal(err)
			}
			rc.Close()
			r := s.requests[len(s.requests)-1]
			if r.Method != http.MethodGet || r.URL.Path != HistoryPath {
				t.Errorf("request %s %s, want GET %s", r.Method, r.URL.Path, HistoryPath)
			}
			if got := r.Header.Get("Authorization"); got != "Bearer api-key-secret" {
				t.Errorf("Authorization %q", got)
			}
			if got, ok := r.Header["Profile-Key"]; r.Header.Get("Profile-Key") != tc.wantKey || (tc.wantKey == "" && ok) {
				t.Errorf("Profile-Key %q, want %q", got, tc.wantKey)
			}
			if got := r.URL.Query().Get("action"); got != tc.wantAction {
				t.Errorf("action %q, want %q", got, tc.wantAction)
			}
		})
	}
}

func TestHistoryRetries(t *testing.T) {
	ok := reply{status: 200, body: `{"social":[]}`}
	tests := map[string]struct {
		replies  []reply
		requests int
		err      error
		waits    func(t *testing.T, waits []time.Duration)
	}{
		"429 then success": {
			replies: []reply{{status: 429}, ok}, requests: 2,
			waits: func(t *testing.T, w []time.Duration) {
				if len(w) != 1 || w[0] < 50*time.Millisecond || w[0] > 100*time.Millisecond {
					t.Errorf("waits %v, want one jittered backoff in [50ms, 100ms]", w)
				}
			},
		},
		"429 with Retry-After seconds": {
			replies: []reply{{status: 429, header: map[string]string{"Retry-After": "7"}}, ok}, requests: 2,
			waits: wantWaits(7 * time.Second),
		},
		"429 with Retry-After date in the past": { // before 2000, where the fake clock starts
			replies: []reply{{status: 429, header: map[string]string{"Retry-After": "Sun, 06 Nov 1994 08:49:37 GMT"}}, ok}, requests: 2,
			waits: wantWaits(0),
		},
		"429 with rate limit spent": {
			replies: []reply{{status: 429, header: map[string]string{"X-Ratelimit-Max": "300", "X-Ratelimit-Count": "300"}}, ok}, requests: 2,
			waits: wantWaits(10 * time.Second),
		},
		"429 with rate limit reset": {
			replies: []reply{{status: 429, header: map[string]string{"X-Ratelimit-Reset": "42"}}, ok}, requests: 2,
			waits: wantWaits(42 * time.Second),
		},
		"huge Retry-After is capped": {
			replies: []reply{{status: 503, header: map[string]string{"Retry-After": "86400"}}, ok}, requests: 2,
			waits: wantWaits(maxRetryAfter),
		},
		"long waits are not cut short by a time budget": {
			replies: []reply{
				{status: 503, header: map[string]string{"Retry-After": "600"}}, {status: 503, header: map[string]string{"Retry-After": "600"}},
				{status: 503, header: map[string]string{"Retry-After": "600"}}, ok,
			}, requests: 4,
			waits: wantWaits(10*time.Minute, 10*time.Minute, 10*time.Minute),
		},
		"5xx then success": {
			replies: []reply{{status: 500}, {status: 502}, {status: 503}, ok}, requests: 4,
			waits: func(t *testing.T, w []time.Duration) {
				bounds := [][2]time.Duration{{50, 100}, {100, 200}, {200, 400}} // ms: doubling, jittered
				for i, b := range bounds {
					if i >= len(w) || w[i] < b[0]*time.Millisecond || w[i] > b[1]*time.Millisecond {
						t.Fatalf("waits %v, want exponential backoff within %v ms", w, bounds)
					}
				}
			},
		},
		"connection dropped then success": {replies: []reply{{hangup: true}, ok}, requests: 2},
		"retry cap":                       {replies: []reply{{status: 503}}, requests: 5, err: ErrRetriesExhausted},
		"429 forever hits the cap":        {replies: []reply{{status: 429}}, requests: 5, err: ErrRetriesExhausted},
		"401 stops at once":               {replies: []reply{{status: 401, body: `{"status":"error","message":"API Key not valid"}`}, ok}, requests: 1, err: ErrUnauthorized},
		"403 stops at once":               {replies: []reply{{status: 403, body: `suspended`}, ok}, requests: 1, err: ErrUnauthorized},
		"400 is not retried":              {replies: []reply{{status: 400, body: `{"message":"bad action"}`}, ok}, requests: 1, err: ErrRejected},
		"408 is retried":                  {replies: []reply{{status: 408}, ok}, requests: 2},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := &script{replies: tc.replies}
			srv := httptest.NewServer(s) // outside the bubble: it waits on the network
			defer srv.Close()
			c, waits := testClient(t, srv)
			p := Profiles([]string{"SECRETPROFILEKEY-abcdef"})[0]
			var err error
			// The fake clock of the bubble makes waits of minutes take no time.
			synctest.Test(t, func(t *testing.T) {
				var rc io.ReadCloser
				rc, err = c.History(t.Context(), p, "")
				if rc != nil {
					rc.Close()
				}
			})
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err != nil {
				if !strings.Contains(err.Error(), "profile 1 (SECR…)") || strings.Contains(err.Error(), "abcdef") {
					t.Errorf("error %q must name the profile by its label, not its key", err)
				}
			}
			if got := s.count(); got != tc.requests {
				t.Errorf("%d requests, want %d", got, tc.requests)
			}
			if tc.waits != nil {
				tc.waits(t, waits())
			}
		})
	}
}

func wantWaits(want ...time.Duration) func(t *testing.T, w []time.Duration) {
	return func(t *testing.T, w []time.Duration) {
		t.Helper()
		if len(w) != len(want) {
			t.Fatalf("waits %v, want %v", w, want)
		}
		for i := range w {
			if d := w[i] - want[i]; d < -time.Second || d > time.Second { // a date has second precision
				t.Fatalf("waits %v, want %v", w, want)
			}
		}
	}
}

func TestHistoryErrorMessage(t *testing.T) {
	s := &script{replies: []reply{{status: 401, body: `{"action":"history","status":"error","code":102,"message":"API Key not valid."}`}}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	c, _ := testClient(t, srv)
	_, err := c.History(t.Context(), Profiles(nil)[0], "")
	want := "ayrshare refused the credentials: history of primary profile: HTTP 401 Unauthorized: API Key not valid."
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
}

func TestHistoryTimeouts(t *testing.T) {
	t.Run("no answer is retried", func(t *testing.T) {
		s := &script{replies: []reply{{stall: true}, {status: 200, body: `{}`}}}
		srv := httptest.NewServer(s)
		defer srv.Close()
		c, _ := testClient(t, srv, WithRequestTimeout(50*time.Millisecond))
		rc, err := c.History(t.Context(), Profiles(nil)[0], "")
		if err != nil {
			t.Fatal(err)
		}
		rc.Close()
		if s.count() != 2 {
			t.Fatalf("%d requests, want 2", s.count())
		}
	})
	t.Run("stalled body fails the read", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"social":[{"a":1}`)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		defer srv.Close()
		defer close(release)
		c, _ := testClient(t, srv, WithRequestTimeout(50*time.Millisecond))
		rc, err := c.History(t.Context(), Profiles(nil)[0], "")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		_, err = io.ReadAll(rc)
		if !errors.Is(err, errStalled) {
			t.Fatalf("read error %v, want a stall", err)
		}
	})
}

func TestHistoryStopsWithContext(t *testing.T) {
	s := &script{replies: []reply{{status: 503}}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	c, _ := testClient(t, srv, WithBackoff(time.Hour, time.Hour))
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		start := time.Now()
		go func() {
			_, err := c.History(ctx, Profiles(nil)[0], "")
			done <- err
		}()
		synctest.Wait() // History now waits to retry
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if waited := time.Since(start); waited >= 30*time.Minute {
			t.Fatalf("History returned %s after the cancel, want at once", waited)
		}
	})
	if s.count() != 1 {
		t.Fatalf("%d requests after cancel, want 1", s.count())
	}
}

func TestNewClientOptions(t *testing.T) {
	tests := map[string]struct {
		url, key string
		opts     []ClientOption
	}{
		"no key":          {"https://api.ayrshare.com", "", nil},
		"no scheme":       {"api.ayrshare.com", "k", nil},
		"ftp":             {"ftp://api.ayrshare.com", "k", nil},
		"zero timeout":    {"https://x", "k", []ClientOption{WithRequestTimeout(0)}},
		"negative retry":  {"https://x", "k", []ClientOption{WithRetries(-1)}},
		"backoff reverse": {"https://x", "k", []ClientOption{WithBackoff(time.Minute, time.Second)}},
		"nil http client": {"https://x", "k", []ClientOption{WithHTTPClient(nil)}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := NewClient(tc.url, tc.key, tc.opts...); err == nil {
				t.Fatal("NewClient accepted it")
			}
		})
	}
}

func TestProfilesNeverShowKeys(t *testing.T) {
	keys := []string{"AAAA-1111-2222-3333-4444", "short"}
	for i, p := range Profiles(keys) {
		if p.Key != keys[i] || strings.Contains(p.Label, keys[i]) || strings.Contains(p.Label, "1111") {
			t.Errorf("profile %d: label %q shows too much of %q", i, p.Label, keys[i])
		}
	}
	if ps := Profiles(nil); len(ps) != 1 || ps[0].Key != "" || ps[0].Label != "primary profile" {
		t.Errorf("no keys: %+v, want the primary profile", ps)
	}
}

func TestHistoryRateLimit(t *testing.T) {
	s := &script{replies: []reply{{status: 200, body: `{"social":[]}`}}}
	srv := httptest.NewServer(s) // outside the bubble: it waits on the network
	defer srv.Close()
	const limit, per = 30, time.Minute
	c, _ := testClient(t, srv, WithRateLimit(limit, per))
	busy, other := Profiles([]string{"BUSYPROFILEKEY-0123456", "OTHERPROFILEKEY-012345"})[0], Profiles([]string{"", "OTHERPROFILEKEY-012345"})[1]
	var at []time.Duration
	var otherWait time.Duration
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		get := func(p Profile) {
			rc, err := c.History(t.Context(), p, "")
			if err != nil {
				t.Fatal(err)
			}
			rc.Close()
		}
		for range 2*limit + 15 {
			get(busy)
			at = append(at, time.Since(start))
		}
		before := time.Now()
		get(other)
		otherWait = time.Since(before)
	})
	// The fake clock stands still during a request, so each time is when the limit let it go.
	for i := 0; i+limit < len(at); i++ {
		if span := at[i+limit] - at[i]; span < per {
			t.Fatalf("requests %d..%d (%d of them) went within %s: over %d per %s", i, i+limit, limit+1, span, limit, per)
		}
	}
	// Strict, not needlessly slow: the burst at once, then the rest of the limit spread evenly.
	if last := at[len(at)-1]; last > 3*per {
		t.Errorf("%d requests took %s, want them within %s", len(at), last, 3*per)
	}
	if otherWait != 0 {
		t.Errorf("another profile waited %s for the busy one's limit", otherWait)
	}
}

func TestHistory429Guard(t *testing.T) {
	s := &script{replies: []reply{{status: 429}}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	c, _ := testClient(t, srv, WithRetries(0), With429Guard(5))
	p := Profiles([]string{"GUARDEDPROFILEKEY-0123"})[0]
	var errs []error
	synctest.Test(t, func(t *testing.T) {
		call := func() {
			rc, err := c.History(t.Context(), p, "")
			if rc != nil {
				rc.Close()
			}
			errs = append(errs, err)
		}
		for range 7 {
			call()
		}
		time.Sleep(25 * time.Hour) // the day's 429s age out
		call()
	})
	for i, err := range errs {
		want := ErrRetriesExhausted
		if i == 5 || i == 6 {
			want = ErrRateBudget
		}
		if !errors.Is(err, want) {
			t.Errorf("call %d: err = %v, want %v", i+1, err, want)
		}
	}
	if n := s.count(); n != 6 {
		t.Errorf("%d requests, want 5 before the guard and 1 a day later", n)
	}
}
