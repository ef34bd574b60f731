package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ayrbridge/ayrbridge/internal/logtest"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/publish"
	"github.com/ayrbridge/ayrbridge/publish/cenats"
	"github.com/ayrbridge/ayrbridge/replay"
	"github.com/ayrbridge/ayrbridge/schema"
)

const apiKey = "test-api-key-0123456789"

// event is one webhook of the fake history.
type event struct {
	id, action string
	created    time.Time
	body       []byte
}

// events makes n events spread over the last n hours, alternating social and scheduled; the
// scheduled ones carry a post id beyond 2^64.
func events(prefix string, n int, now time.Time) []event {
	out := make([]event, n)
	for i := range out {
		e := event{id: fmt.Sprintf("%s%04d", prefix, i), created: now.Add(-time.Duration(i+1) * time.Hour).UTC()}
		if i%2 == 0 {
			e.action = "social"
			e.body = fmt.Appendf(nil, `{"action":"social","created":%q,"displayName":"ayrshare","hookId":%q,"platform":"snapchat","refId":"9abf1426d6ce9122ef11c72bd62e59807c5cc083","source":"user","timeStamp":%d,"title":"Primary Profile","type":"link","url":"https://us-central1-ayrshare.cloudfunctions.net/testFeed"}`,
				e.created.Format(time.RFC3339), e.id, e.created.Unix())
		} else {
			e.action = "scheduled"
			e.body = fmt.Appendf(nil, `{"action":"scheduled","created":%q,"errors":[],"hookId":%q,"id":"NAOWq7cQf1CsyT7vqTng","platform":"tiktok","postIds":[{"status":"success","id":754702215869473102212345,"platform":"tiktok"}],"refId":"9abf1426d6ce9122ef11c72bd62e59807c5cc083","status":"success","subAction":"tikTokPublished","timeStamp":%d,"title":"Primary Profile"}`,
				e.created.Format(time.RFC3339), e.id, e.created.Unix())
		}
		out[i] = e
	}
	return out
}

// ayrshare is a fake history endpoint: events per Profile-Key, scripted failures first.
type ayrshare struct {
	*httptest.Server
	mu       sync.Mutex
	profiles map[string][]event
	failures []failure // answered before any success, in order
	requests []request
}

type failure struct {
	status int
	header map[string]string
	body   string
}

type request struct{ profileKey, action string }

func newAyrshare(t *testing.T, profiles map[string][]event) *ayrshare {
	t.Helper()
	a := &ayrshare{profiles: profiles}
	a.Server = httptest.NewServer(a)
	t.Cleanup(a.Close)
	return a
}

func (a *ayrshare) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	key, action := r.Header.Get("Profile-Key"), r.URL.Query().Get("action")
	a.requests = append(a.requests, request{key, action})
	var fail *failure
	if len(a.failures) > 0 {
		fail = &a.failures[0]
		a.failures = a.failures[1:]
	}
	evs, ok := a.profiles[key]
	a.mu.Unlock()
	switch {
	case r.URL.Path != replay.HistoryPath || r.Header.Get("Authorization") != "Bearer "+apiKey:
		http.Error(w, `{"status":"error","message":"API Key not valid"}`, http.StatusUnauthorized)
		return
	case fail != nil:
		for k, v := range fail.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(fail.status)
		io.WriteString(w, fail.body)
		return
	case !ok:
		http.Error(w, `{"status":"error","message":"Profile Key not found"}`, http.StatusForbidden)
		return
	}
	groups := map[string][][]byte{}
	var order []string
	for _, e := range evs {
		if action != "" && e.action != action {
			continue
		}
		if _, seen := groups[e.action]; !seen {
			order = append(order, e.action)
		}
		groups[e.action] = append(groups[e.action], e.body)
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, "{")
	for i, act := range order {
		if i > 0 {
			io.WriteString(w, ",")
		}
		fmt.Fprintf(w, "%q:[%s]", act, bytes.Join(groups[act], []byte(",")))
	}
	io.WriteString(w, "}")
}

func (a *ayrshare) fail(f ...failure) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failures = append(a.failures, f...)
}

// add appends evs to the history of the profile with key.
func (a *ayrshare) add(key string, evs ...event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.profiles[key] = append(a.profiles[key], evs...)
}

func (a *ayrshare) reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.requests = nil
}

func (a *ayrshare) log() []request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]request(nil), a.requests...)
}

// world is a NATS server with the bridge's stream and a fake Ayrshare.
type world struct {
	ns      *server.Server
	dir     string // the server's store, for a restart
	js      jetstream.JetStream
	api     *ayrshare
	environ map[string]string
	now     time.Time
}

func newWorld(t *testing.T, dedup time.Duration, profiles map[string][]event) *world {
	t.Helper()
	dir := t.TempDir()
	ns := natstest.RunServer(t, dir)
	_, js := natstest.Connect(t, ns)
	_, err := publish.EnsureStream(t.Context(), js, publish.StreamConfig{
		Name: "AYRSHARE", Subjects: []string{schema.StreamSubjects}, Replicas: 1, DedupWindow: dedup,
	})
	if err != nil {
		t.Fatalf("ensure stream: %v", err)
	}
	api := newAyrshare(t, profiles)
	return &world{ns: ns, dir: dir, js: js, api: api, now: time.Now(), environ: map[string]string{
		"AYRSHARE_API_KEY":   apiKey,
		"AYRSHARE_API_URL":   api.URL,
		"NATS_URL":           ns.ClientURL(),
		"REPLAY_BACKOFF":     "1ms",
		"REPLAY_MAX_BACKOFF": "2ms",
	}}
}

// bridge stores evs the way the bridge does on delivery.
func (w *world) bridge(t *testing.T, evs ...event) {
	t.Helper()
	for _, e := range evs {
		ev, err := schema.NewEvent(e.body, schema.Meta{ReceivedAt: e.created})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.js.PublishMsg(t.Context(), cenats.Msg(ev)); err != nil {
			t.Fatalf("bridge publish %s: %v", e.id, err)
		}
	}
}

// replay runs the job with args (plus --json) and env overrides, and returns its summary and error.
func (w *world) replay(t *testing.T, env map[string]string, args ...string) (replay.Summary, error) {
	t.Helper()
	environ := map[string]string{}
	for k, v := range w.environ {
		environ[k] = v
	}
	for k, v := range env {
		environ[k] = v
	}
	cfg, err := loadConfig(append(args, "--json"), environ, time.Now(), io.Discard)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	var out bytes.Buffer
	runErr := run(t.Context(), cfg, zerolog.Nop(), &out)
	var sum replay.Summary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		t.Fatalf("summary is not JSON (%v): %s", err, out.String())
	}
	return sum, runErr
}

// stored returns the stream's messages by event id; it fails the test on a duplicate.
func (w *world) stored(t *testing.T) map[string]*jetstream.RawStreamMsg {
	t.Helper()
	out := map[string]*jetstream.RawStreamMsg{}
	for _, m := range natstest.Messages(t, w.js, "AYRSHARE") {
		id := m.Header.Get(nats.MsgIdHdr)
		if _, dup := out[id]; dup {
			t.Fatalf("event %s is stored twice", id)
		}
		out[id] = m
	}
	return out
}

// requireReplayed checks that the stream holds exactly evs, each once, and that each event
// of replayed is the bridge's message plus ce-replayed while the others are not marked.
func (w *world) requireReplayed(t *testing.T, evs []event, replayed map[string]bool) {
	t.Helper()
	stored := w.stored(t)
	if len(stored) != len(evs) {
		t.Fatalf("stream holds %d events, want %d", len(stored), len(evs))
	}
	for _, e := range evs {
		m, ok := stored[e.id]
		if !ok {
			t.Fatalf("event %s missing from the stream", e.id)
		}
		ev, err := schema.NewEvent(e.body, schema.Meta{Replayed: replayed[e.id]})
		if err != nil {
			t.Fatal(err)
		}
		want := cenats.Msg(ev)
		if m.Subject != want.Subject || !bytes.Equal(m.Data, e.body) {
			t.Fatalf("event %s stored as %s %s\nwant %s %s", e.id, m.Subject, m.Data, want.Subject, e.body)
		}
		for k := range m.Header {
			if strings.HasPrefix(strings.ToLower(k), "ce-") && want.Header.Get(k) == "" {
				t.Fatalf("event %s has unexpected header %s", e.id, k)
			}
		}
		for k, v := range want.Header {
			if got := m.Header.Values(k); fmt.Sprint(got) != fmt.Sprint(v) {
				t.Fatalf("event %s header %s = %v, want %v", e.id, k, got, v)
			}
		}
	}
}

func TestGapFillAndIdempotentRerun(t *testing.T) {
	now := time.Now()
	evs := events("h", 40, now)
	w := newWorld(t, time.Hour, map[string][]event{"": evs})
	present, missing := halves(evs)
	w.bridge(t, present...)

	sum, err := w.replay(t, nil)
	if err != nil {
		t.Fatalf("first run: %v", err)
	}
	want := replay.Counts{InHistory: 40, InStream: 20, Missing: 20, NewlyMissing: 20, Published: 20}
	if sum.Total != want {
		t.Fatalf("first run total %+v, want %+v", sum.Total, want)
	}
	if got := sum.Actions["social"]; got.InHistory != 20 || got.Published != 10 {
		t.Fatalf("social %+v, want 20 in history, 10 published", got)
	}
	w.requireReplayed(t, evs, ids(missing))

	sum, err = w.replay(t, nil)
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	if want := (replay.Counts{InHistory: 40, InStream: 40}); sum.Total != want {
		t.Fatalf("second run total %+v, want %+v", sum.Total, want)
	}
	w.requireReplayed(t, evs, ids(missing))
}

// halves returns every other event as already delivered, and the rest as missing; each half
// holds both actions.
func halves(evs []event) (present, missing []event) {
	for i, e := range evs {
		if i/2%2 == 0 {
			present = append(present, e)
		} else {
			missing = append(missing, e)
		}
	}
	return present, missing
}

func ids(evs []event) map[string]bool {
	out := map[string]bool{}
	for _, e := range evs {
		out[e.id] = true
	}
	return out
}

func TestDedupWindowExpired(t *testing.T) {
	evs := events("d", 20, time.Now())
	w := newWorld(t, time.Second, map[string][]event{"": evs})
	present, missing := halves(evs)
	w.bridge(t, present...)
	if sum, err := w.replay(t, nil); err != nil || sum.Total.Published != 10 {
		t.Fatalf("first run: published %d, err %v", sum.Total.Published, err)
	}
	time.Sleep(1500 * time.Millisecond) // past the duplicate window: Nats-Msg-Id alone no longer helps

	sum, err := w.replay(t, nil)
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	if want := (replay.Counts{InHistory: 20, InStream: 20}); sum.Total != want {
		t.Fatalf("second run total %+v, want %+v", sum.Total, want)
	}
	w.requireReplayed(t, evs, ids(missing))

	// Proof that the window has passed: JetStream now takes the same id as a new message.
	ev, _ := schema.NewEvent(missing[0].body, schema.Meta{Replayed: true})
	ack, err := w.js.PublishMsg(t.Context(), cenats.Msg(ev))
	if err != nil || ack.Duplicate {
		t.Fatalf("publish after the window: ack %+v err %v, want a new message", ack, err)
	}
}

func TestHistoryFailures(t *testing.T) {
	tests := map[string]struct {
		failures []failure
		env      map[string]string
		requests int
		errText  []string // in the run's error; nil means success
	}{
		"429 then success":                  {failures: []failure{{status: 429}}, requests: 2},
		"429 with Retry-After then success": {failures: []failure{{status: 429, header: map[string]string{"Retry-After": "0"}}}, requests: 2},
		"429 rate limit spent then success": {failures: []failure{{status: 429, header: map[string]string{"x-ratelimit-max": "300", "x-ratelimit-count": "300"}}}, requests: 2},
		"5xx then success":                  {failures: []failure{{status: 500}, {status: 502}, {status: 503}}, requests: 4},
		"401 stops at once": {failures: []failure{{status: 401, body: `{"message":"API Key not valid"}`}}, requests: 1,
			errText: []string{"refused the credentials", "primary profile", "API Key not valid"}},
		"retry cap": {failures: []failure{{status: 503}, {status: 503}, {status: 503}, {status: 503}}, requests: 3,
			env: map[string]string{"REPLAY_MAX_RETRIES": "2"}, errText: []string{"after all retries", "3 attempts", "HTTP 503"}},
		"malformed history": {failures: []failure{{status: 200, body: `{"social":[{"action":"social"},]}`}}, requests: 1,
			errText: []string{"malformed history response", "primary profile", "at byte 31"}},
		"html instead of json": {failures: []failure{{status: 200, body: `<html>oops</html>`}}, requests: 1,
			errText: []string{"malformed history response", "want an object keyed by action"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			evs := events("f", 6, time.Now())
			w := newWorld(t, time.Hour, map[string][]event{"": evs})
			w.api.fail(tc.failures...)
			sum, err := w.replay(t, tc.env)
			if got := len(w.api.log()); got != tc.requests {
				t.Errorf("%d history requests, want %d", got, tc.requests)
			}
			if tc.errText == nil {
				if err != nil || sum.Total.Published != 6 {
					t.Fatalf("published %d, err %v; want all 6", sum.Total.Published, err)
				}
				w.requireReplayed(t, evs, ids(evs))
				return
			}
			if err == nil {
				t.Fatal("run succeeded")
			}
			for _, s := range tc.errText {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if len(sum.Errors) != 1 || sum.Total.Published != 0 || len(w.stored(t)) != 0 {
				t.Errorf("summary %+v: want one error and nothing published", sum)
			}
		})
	}
}

func TestFilters(t *testing.T) {
	now := time.Now()
	evs := events("x", 10, now) // created 1h..10h ago; even indexes social, odd scheduled
	tests := map[string]struct {
		args      []string
		published []string
		outside   int64
	}{
		"action":                {[]string{"--action", "scheduled"}, []string{"x0001", "x0003", "x0005", "x0007", "x0009"}, 0},
		"two actions":           {[]string{"--action", "scheduled", "--action", "social"}, nil, 0},
		"since duration":        {[]string{"--since", "150m"}, []string{"x0000", "x0001"}, 8},
		"since and until times": {[]string{"--since", now.Add(-5*time.Hour - time.Minute).Format(time.RFC3339), "--until", now.Add(-3*time.Hour + time.Minute).Format(time.RFC3339)}, []string{"x0002", "x0003", "x0004"}, 7},
		"action and since":      {[]string{"--action", "social", "--since", "4h30m"}, []string{"x0000", "x0002"}, 3},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t, time.Hour, map[string][]event{"": evs})
			sum, err := w.replay(t, nil, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			stored := w.stored(t)
			want := tc.published
			if want == nil { // everything
				for _, e := range evs {
					want = append(want, e.id)
				}
			}
			if len(stored) != len(want) || sum.Total.Published != int64(len(want)) || sum.Total.OutsideWindow != tc.outside {
				t.Fatalf("stored %d, summary %+v; want %d published, %d outside", len(stored), sum.Total, len(want), tc.outside)
			}
			for _, id := range want {
				if _, ok := stored[id]; !ok {
					t.Fatalf("event %s not published; stream holds %d", id, len(stored))
				}
			}
		})
	}
}

func TestDryRunPublishesNothing(t *testing.T) {
	evs := events("y", 12, time.Now())
	w := newWorld(t, time.Hour, map[string][]event{"": evs})
	present, _ := halves(evs)
	w.bridge(t, present...)
	sum, err := w.replay(t, nil, "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	if want := (replay.Counts{InHistory: 12, InStream: 6, Missing: 6, NewlyMissing: 6}); sum.Total != want || !sum.DryRun {
		t.Fatalf("total %+v dry %v, want %+v", sum.Total, sum.DryRun, want)
	}
	if got := len(w.stored(t)); got != 6 {
		t.Fatalf("stream holds %d events after a dry run, want the 6 it had", got)
	}
}

func TestProfilesGetTheirKey(t *testing.T) {
	now := time.Now()
	a, b := events("a", 4, now), events("b", 6, now)
	w := newWorld(t, time.Hour, map[string][]event{"KEY-A-000000000000": a, "KEY-B-000000000000": b})
	sum, err := w.replay(t, map[string]string{"AYRSHARE_PROFILE_KEYS": "KEY-A-000000000000, KEY-B-000000000000,"})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Profiles != 2 || sum.Total.Published != 10 {
		t.Fatalf("summary %+v, want 2 profiles and 10 published", sum)
	}
	if got := fmt.Sprint(w.api.log()); got != "[{KEY-A-000000000000 } {KEY-B-000000000000 }]" {
		t.Fatalf("requests %s, want one per profile with its key", got)
	}
	w.requireReplayed(t, append(a, b...), ids(append(a, b...)))

	// One request per profile and action, each with the profile's key.
	w.api.reset()
	if _, err := w.replay(t, map[string]string{"AYRSHARE_PROFILE_KEYS": "KEY-A-000000000000,KEY-B-000000000000"}, "--action", "social", "--action", "feed"); err != nil {
		t.Fatal(err)
	}
	want := "[{KEY-A-000000000000 social} {KEY-A-000000000000 feed} {KEY-B-000000000000 social} {KEY-B-000000000000 feed}]"
	if got := fmt.Sprint(w.api.log()); got != want {
		t.Fatalf("requests %s\nwant %s", got, want)
	}
}

func TestUnknownProfileIsNamedAndOthersRun(t *testing.T) {
	evs := events("g", 4, time.Now())
	w := newWorld(t, time.Hour, map[string][]event{"KEY-GOOD-00000000000": evs})
	sum, err := w.replay(t, map[string]string{"AYRSHARE_PROFILE_KEYS": "KEY-GONE-00000000000,KEY-GOOD-00000000000"})
	if err == nil || !strings.Contains(err.Error(), "profile 1 (KEY-…)") || strings.Contains(err.Error(), "GONE") {
		t.Fatalf("err = %v, want 403 naming profile 1 without its key", err)
	}
	if sum.Total.Published != 4 {
		t.Fatalf("published %d, want the good profile's 4", sum.Total.Published)
	}
}

func TestExitCodes(t *testing.T) {
	evs := events("e", 4, time.Now())
	w := newWorld(t, time.Hour, map[string][]event{"": evs})
	// env returns the world's environment without drop and with the pairs of kv set.
	env := func(drop string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range w.environ {
			if k != drop {
				out[k] = v
			}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	tests := map[string]struct {
		args    []string
		environ map[string]string
		code    int
		stderr  string
		stdout  string
	}{
		"no API key":      {nil, env("AYRSHARE_API_KEY"), exitUsage, "AYRSHARE_API_KEY is not set", ""},
		"bad flag":        {[]string{"--nope"}, w.environ, exitUsage, "flag provided but not defined", ""},
		"bad since":       {[]string{"--since", "yesterday"}, w.environ, exitUsage, `--since: "yesterday"`, ""},
		"since > until":   {[]string{"--since", "1h", "--until", "2h"}, w.environ, exitUsage, "is not before --until", ""},
		"bad log format":  {nil, env("", "LOG_FORMAT", "xml"), exitUsage, "LOG_FORMAT", ""},
		"every too short": {[]string{"--every", "500ms"}, w.environ, exitUsage, "--every 500ms: at least 1s", ""},
		"bad every":       {[]string{"--every", "often"}, w.environ, exitUsage, `--every: "often"`, ""},
		"push when continuous": {[]string{"--every", "1m"}, env("", "REPLAY_PUSHGATEWAY_URL", "http://gw:9091"), exitUsage,
			"REPLAY_PUSHGATEWAY_URL is for a one-shot run", ""},
		"bad pushgateway":     {nil, env("", "REPLAY_PUSHGATEWAY_URL", "gw:9091"), exitUsage, "REPLAY_PUSHGATEWAY_URL", ""},
		"bad metrics address": {nil, env("", "REPLAY_METRICS_LISTEN", "9091"), exitUsage, "REPLAY_METRICS_LISTEN", ""},
		"help":                {[]string{"-h"}, w.environ, exitOK, "usage: replay", ""},
		"success":             {[]string{"--since", "30d"}, w.environ, exitOK, "replay finished", "total"},
		"dry run":             {[]string{"--dry-run"}, w.environ, exitOK, "", "dry run"},
		"history refused": {nil, env("", "AYRSHARE_API_KEY", "wrong"), exitFailed, "refused the credentials",
			"error: ayrshare refused the credentials"},
		"missing stream":   {nil, env("", "NATS_STREAM", "OTHER"), exitFailed, "stream OTHER not found", ""},
		"nats unreachable": {nil, env("", "NATS_URL", "nats://127.0.0.1:1", "REPLAY_NATS_CONNECT_TIMEOUT", "100ms"), exitFailed, "nats not reachable", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := cli(t.Context(), tc.args, tc.environ, &stdout, &stderr, nil)
			if code != tc.code {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tc.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.stderr)
			}
			if !strings.Contains(stdout.String(), tc.stdout) {
				t.Errorf("stdout %q lacks %q", stdout.String(), tc.stdout)
			}
			if strings.Contains(stderr.String()+stdout.String(), apiKey) {
				t.Errorf("the API key was printed")
			}
		})
	}
}

func TestInterrupted(t *testing.T) {
	evs := events("i", 4, time.Now())
	w := newWorld(t, time.Hour, map[string][]event{"": evs})
	ctx, cancel := context.WithCancel(t.Context())
	w.api.fail(failure{status: 503}) // the run is cancelled while it waits to retry
	env := map[string]string{}
	for k, v := range w.environ {
		env[k] = v
	}
	env["REPLAY_BACKOFF"], env["REPLAY_MAX_BACKOFF"] = "1h", "1h"
	var stdout, stderr bytes.Buffer
	code := make(chan int, 1)
	go func() { code <- cli(ctx, []string{"--json"}, env, &stdout, &stderr, nil) }()
	natstest.Eventually(t, 10*time.Second, func() error {
		if len(w.api.log()) == 0 {
			return fmt.Errorf("no history request yet")
		}
		return nil
	})
	cancel()
	if code := <-code; code != exitInterrupted {
		t.Fatalf("exit code %d, want %d; stderr:\n%s", code, exitInterrupted, stderr.String())
	}
	var sum replay.Summary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil || !sum.Interrupted {
		t.Fatalf("summary %s (%v): want interrupted", stdout.String(), err)
	}
}

func TestTextSummary(t *testing.T) {
	sum := replay.Summary{
		Since: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC), Until: time.Date(2025, 9, 1, 0, 0, 0, 0, time.UTC),
		Profiles: 1, StoredIDs: 3, Seconds: 1.25,
		Actions: map[string]replay.Counts{
			"social":    {InHistory: 5, InStream: 3, Missing: 2, NewlyMissing: 2, Published: 2},
			"scheduled": {InHistory: 1000, Missing: 1000, NewlyMissing: 1000, Published: 999, Failed: 1, OutsideWindow: 7},
		},
		Total:  replay.Counts{InHistory: 1005, InStream: 3, Missing: 1002, NewlyMissing: 1002, Published: 1001, Failed: 1, OutsideWindow: 7},
		Errors: []string{"history of profile 2 (abcd…): boom"},
	}
	var b bytes.Buffer
	if err := writeSummary(&b, sum, false); err != nil {
		t.Fatal(err)
	}
	want := `replay of 2025-03-01T00:00:00Z .. 2025-09-01T00:00:00Z, 1 profile(s), 3 ids read from the stream, 1.2s
     action  in history  in stream  missing  published  failed  outside window
  scheduled        1000          0     1000        999       1               7
     social           5          3        2          2       0               0
      total        1005          3     1002       1001       1               7
error: history of profile 2 (abcd…): boom
`
	if b.String() != want {
		t.Fatalf("summary\n%s\nwant\n%s", b.String(), want)
	}
}

func TestProgress(t *testing.T) {
	evs := events("p", 2, time.Now())
	w := newWorld(t, time.Hour, map[string][]event{"": evs})
	client, err := replay.NewClient(w.api.URL, apiKey)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := replay.New(client, func(context.Context, time.Time, func(string)) (int, error) { return 0, nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("log lines", func(t *testing.T) {
		var logs logtest.Buffer
		stop := showProgress(rep, config{ProgressEvery: time.Millisecond}, zerolog.New(&logs))
		natstest.Eventually(t, 10*time.Second, func() error {
			if !strings.Contains(logs.String(), `"message":"replay progress"`) {
				return fmt.Errorf("no progress line in %q", logs.String())
			}
			return nil
		})
		stop()
		if !strings.Contains(logs.String(), `"phase":"start"`) {
			t.Fatalf("log %s lacks the phase", logs.String())
		}
	})
	t.Run("bar", func(t *testing.T) {
		var bar logtest.Buffer
		stop := showProgress(rep, config{ProgressEvery: time.Hour, progress: &bar}, zerolog.Nop())
		natstest.Eventually(t, 10*time.Second, func() error {
			if bar.String() == "" {
				return fmt.Errorf("no bar output")
			}
			return nil
		})
		stop()
		if !strings.Contains(bar.String(), "events") {
			t.Fatalf("bar output %q", bar.String())
		}
	})
}

// TestStreamWithoutTheSubjects is a replay whose publishes can never succeed: the stream
// exists but does not take ayrshare.>. It must end within seconds, count every failure and
// exit non-zero, not retry each message in turn.
func TestStreamWithoutTheSubjects(t *testing.T) {
	ns := natstest.RunServer(t, "")
	_, js := natstest.Connect(t, ns)
	if _, err := publish.EnsureStream(t.Context(), js, publish.StreamConfig{
		Name: "AYRSHARE", Subjects: []string{"elsewhere.>"}, Replicas: 1, DedupWindow: time.Hour,
	}); err != nil {
		t.Fatal(err)
	}
	api := newAyrshare(t, map[string][]event{"": events("s", 200, time.Now())})
	environ := map[string]string{"AYRSHARE_API_KEY": apiKey, "AYRSHARE_API_URL": api.URL, "NATS_URL": ns.ClientURL()}
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := cli(t.Context(), []string{"--since", "24h", "--json"}, environ, &stdout, &stderr, nil)
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("the replay took %s", took)
	}
	if code != exitFailed {
		t.Fatalf("exit code %d, want %d; stderr:\n%s", code, exitFailed, stderr.String())
	}
	var sum replay.Summary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("summary is not JSON (%v): %s", err, stdout.String())
	}
	if sum.Total.Published != 0 || sum.Total.Failed == 0 || sum.Total.Failed != sum.Total.Missing {
		t.Fatalf("total %+v: want every missing event counted as failed", sum.Total)
	}
}
