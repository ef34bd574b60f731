package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/ayrbridge/ayrbridge/internal/logtest"
	"github.com/ayrbridge/ayrbridge/internal/metricstest"
	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/internal/proc"
	"github.com/ayrbridge/ayrbridge/internal/proctest"
)

func TestMain(m *testing.M) { proctest.Main(m) }

// running is a continuous replay started in this process by cli.
type running struct {
	metrics string // base URL of /metrics and /healthz
	stderr  *logtest.Buffer
	cancel  context.CancelFunc
	code    chan int
}

// continuous starts cli with --every and the world's environment plus env, serving metrics on
// a free port; the test's end stops it.
func (w *world) continuous(t *testing.T, env map[string]string, args ...string) *running {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", proctest.FreePorts(t, 1)[0])
	environ := map[string]string{"REPLAY_METRICS_LISTEN": addr}
	for _, m := range []map[string]string{w.environ, env} {
		for k, v := range m {
			environ[k] = v
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{metrics: "http://" + addr, stderr: &logtest.Buffer{}, cancel: cancel, code: make(chan int, 1)}
	go func() { r.code <- cli(ctx, args, environ, io.Discard, r.stderr, nil) }()
	t.Cleanup(func() {
		if code, ok := r.stop(10 * time.Second); !ok {
			t.Errorf("the replay did not stop within 10s of its context")
		} else if code != exitOK {
			t.Errorf("exit code %d after a stop, want 0", code)
		}
		if t.Failed() {
			t.Logf("replay log:\n%s", r.stderr.String())
		}
	})
	return r
}

// stop cancels the replay and waits for its exit code.
func (r *running) stop(wait time.Duration) (code int, ok bool) {
	r.cancel()
	select {
	case code := <-r.code:
		r.code <- code // a second stop gets it too
		return code, true
	case <-time.After(wait):
		return 0, false
	}
}

// waitPasses waits until the replay at url finished at least ok good and bad failed passes,
// and returns the metrics then.
func waitPasses(t *testing.T, url string, ok, bad float64) map[string]float64 {
	t.Helper()
	var samples map[string]float64
	natstest.Eventually(t, 30*time.Second, func() error {
		var err error
		if samples, err = metricstest.Scrape(t.Context(), url+"/metrics"); err != nil {
			return err
		}
		gotOK, gotBad := samples[`ayrbridge_replay_passes_total{result="ok"}`], samples[`ayrbridge_replay_passes_total{result="error"}`]
		if gotOK < ok || gotBad < bad {
			return fmt.Errorf("%v ok and %v failed passes, want %v and %v", gotOK, gotBad, ok, bad)
		}
		return nil
	})
	return samples
}

// TestContinuousReplay runs the replay with --every against a history that grows between
// passes, a history that fails once, and a NATS server that goes away and comes back.
func TestContinuousReplay(t *testing.T) {
	now := time.Now()
	first := events("c", 10, now)
	w := newWorld(t, time.Hour, map[string][]event{"": first})
	present, lost := halves(first)
	w.bridge(t, present...)
	r := w.continuous(t, map[string]string{"REPLAY_MAX_RETRIES": "0", "REPLAY_NATS_CONNECT_TIMEOUT": "500ms"}, "--every", "1s", "--since", "30d")

	// The first pass fills the gap at once.
	m := waitPasses(t, r.metrics, 1, 0)
	if got := metricstest.Sum(m, "ayrbridge_replay_missing_events_total"); got != 4 {
		t.Fatalf("missing events %v after the first pass, want 4", got)
	}
	w.requireReplayed(t, first, ids(lost))
	for _, k := range []string{`ayrbridge_replay_interval_seconds`, `ayrbridge_replay_profiles`, `ayrbridge_replay_profiles_stopped`} {
		if _, ok := m[k]; !ok {
			t.Errorf("%s not exported", k)
		}
	}
	if m["ayrbridge_replay_interval_seconds"] != 1 || m["ayrbridge_replay_profiles"] != 1 {
		t.Errorf("interval %v, profiles %v: want 1 and 1", m["ayrbridge_replay_interval_seconds"], m["ayrbridge_replay_profiles"])
	}
	if res, err := http.Get(r.metrics + "/healthz"); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v %v", res, err)
	}

	// The history grows: two new events reach the stream live, two are lost on the way.
	second := events("d", 4, now.Add(time.Minute))
	w.bridge(t, second[0], second[2])
	w.api.add("", second...)
	passes := m[`ayrbridge_replay_passes_total{result="ok"}`]
	m = waitPasses(t, r.metrics, passes+1, 0)
	all := append(slices.Clone(first), second...)
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := len(w.stored(t)); n != len(all) {
			return fmt.Errorf("stream holds %d events, want %d", n, len(all))
		}
		return nil
	})
	// Idle passes publish nothing and count nothing again.
	m = waitPasses(t, r.metrics, passes+3, 0)
	if got := metricstest.Sum(m, "ayrbridge_replay_missing_events_total"); got != 6 {
		t.Fatalf("missing events %v, want the 4 and the 2 lost later, each once", got)
	}
	if got := metricstest.Sum(m, "ayrbridge_replay_published_events_total"); got != 6 {
		t.Fatalf("published events %v, want 6", got)
	}
	if got := m[`ayrbridge_replay_missing_events_total{action="scheduled"}`]; got != 4 {
		t.Errorf("missing scheduled events %v, want 4", got)
	}
	w.requireReplayed(t, all, ids(append(lost, second[1], second[3])))

	// A history failure fails one pass; the next runs on schedule and succeeds.
	w.api.fail(failure{status: http.StatusBadGateway, body: "upstream down"})
	ok := m[`ayrbridge_replay_passes_total{result="ok"}`]
	m = waitPasses(t, r.metrics, ok+1, 1)
	if got := m[`ayrbridge_replay_history_requests_total{code="502"}`]; got != 1 {
		t.Errorf("502 requests %v, want 1", got)
	}
	if !strings.Contains(r.stderr.String(), "upstream down") {
		t.Errorf("the failed pass is not logged with its cause")
	}

	// NATS goes away: passes fail, and succeed again once it is back.
	addr := w.ns.Addr().String()
	w.ns.Shutdown()
	w.ns.WaitForShutdown()
	m = waitPasses(t, r.metrics, 0, 2)
	failedAt := m[`ayrbridge_replay_passes_total{result="ok"}`]
	w.ns = natstest.RunServerAt(t, w.dir, addr)
	m = waitPasses(t, r.metrics, failedAt+1, 2)
	if age := time.Since(time.Unix(int64(m["ayrbridge_replay_last_success_timestamp_seconds"]), 0)); age > 5*time.Second {
		t.Errorf("last success %s ago, want the pass just finished", age)
	}
	if got := metricstest.Sum(m, "ayrbridge_replay_missing_events_total"); got != 6 {
		t.Fatalf("missing events %v after the outage, want still 6", got)
	}
	if code, ok := r.stop(10 * time.Second); !ok || code != exitOK {
		t.Fatalf("stop: code %d, stopped %v; want 0", code, ok)
	}
}

// TestContinuousStartsBeforeNATS: a replay that starts before its NATS server (as pods do)
// waits for it rather than failing its first pass, and does not exit.
func TestContinuousStartsBeforeNATS(t *testing.T) {
	evs := events("b", 4, time.Now())
	w := newWorld(t, time.Hour, map[string][]event{"": evs})
	addr := w.ns.Addr().String()
	w.ns.Shutdown()
	w.ns.WaitForShutdown()
	r := w.continuous(t, map[string]string{"REPLAY_NATS_CONNECT_TIMEOUT": "30s"}, "--every", "1s")
	time.Sleep(time.Second) // the first pass is waiting for the connection
	w.ns = natstest.RunServerAt(t, w.dir, addr)
	m := waitPasses(t, r.metrics, 1, 0)
	if bad := m[`ayrbridge_replay_passes_total{result="error"}`]; bad != 0 {
		t.Errorf("%v failed passes: the first one should have waited for NATS", bad)
	}
	w.requireReplayed(t, evs, ids(evs))
}

// TestContinuousStopsRefusedProfile: a profile whose key Ayrshare refuses is named in the log,
// counted as stopped and not asked again, while the other goes on.
func TestContinuousStopsRefusedProfile(t *testing.T) {
	evs := events("r", 4, time.Now())
	w := newWorld(t, time.Hour, map[string][]event{"KEY-GOOD-00000000000": evs})
	r := w.continuous(t, map[string]string{"AYRSHARE_PROFILE_KEYS": "KEY-GONE-00000000000,KEY-GOOD-00000000000"}, "--every", "1s")
	m := waitPasses(t, r.metrics, 2, 1)
	if m["ayrbridge_replay_profiles_stopped"] != 1 || m["ayrbridge_replay_profiles"] != 2 {
		t.Fatalf("profiles %v, stopped %v: want 2 and 1", m["ayrbridge_replay_profiles"], m["ayrbridge_replay_profiles_stopped"])
	}
	if m[`ayrbridge_replay_passes_total{result="error"}`] != 1 {
		t.Errorf("%v failed passes, want only the one that was refused", m[`ayrbridge_replay_passes_total{result="error"}`])
	}
	gone := 0
	for _, req := range w.api.log() {
		if req.profileKey == "KEY-GONE-00000000000" {
			gone++
		}
	}
	if gone != 1 {
		t.Errorf("the refused profile was asked %d times, want once", gone)
	}
	log := r.stderr.String()
	if !strings.Contains(log, `"stopped_profiles":["profile 1 (KEY-…)"]`) || strings.Contains(log, "GONE") {
		t.Errorf("the log must name the stopped profile by its label, not its key:\n%s", log)
	}
	w.requireReplayed(t, evs, ids(evs))
}

// TestContinuousSIGTERMDuringPass sends SIGTERM to the built replay while a pass waits to
// retry the history: it stops at once and exits 0.
func TestContinuousSIGTERMDuringPass(t *testing.T) {
	evs := events("s", 4, time.Now())
	w := newWorld(t, time.Hour, map[string][]event{"": evs})
	w.api.fail(failure{status: http.StatusServiceUnavailable})
	var env []string
	for k, v := range w.environ {
		env = append(env, k+"="+v)
	}
	env = append(env, "REPLAY_BACKOFF=1h", "REPLAY_MAX_BACKOFF=1h")
	p := proctest.Start(t, proc.Config{Bin: proctest.Build(t, "./cmd/replay"), Args: []string{"--every", "1m"}, Env: env})
	natstest.Eventually(t, 20*time.Second, func() error {
		if len(w.api.log()) == 0 {
			return fmt.Errorf("no history request yet")
		}
		return nil
	})
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	status, exited := p.Wait(15 * time.Second)
	if !exited {
		t.Fatal("the replay did not exit within 15s of SIGTERM")
	}
	if status != nil {
		t.Fatalf("exit status %v after SIGTERM, want 0\n%s", status, p.Output())
	}
	if out := p.Output(); !strings.Contains(out, `"interrupted":true`) || !strings.Contains(out, "replay pass finished") {
		t.Errorf("the abandoned pass is not logged as interrupted:\n%s", out)
	}
	if n := len(w.stored(t)); n != 0 {
		t.Errorf("stream holds %d events: the interrupted pass published", n)
	}
}

// pushgateway is a fake Pushgateway that keeps what was pushed, by method and path.
type pushgateway struct {
	*httptest.Server
	mu     sync.Mutex
	pushes []pushed
}

type pushed struct {
	method, path string
	samples      map[string]float64
}

func newPushgateway(t *testing.T) *pushgateway {
	g := &pushgateway{}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dec := expfmt.NewDecoder(r.Body, expfmt.ResponseFormat(r.Header))
		p := pushed{method: r.Method, path: r.URL.Path, samples: map[string]float64{}}
		for {
			var mf dto.MetricFamily
			if err := dec.Decode(&mf); err != nil {
				break
			}
			for _, m := range mf.GetMetric() {
				key := mf.GetName()
				for _, l := range m.GetLabel() {
					key += fmt.Sprintf("{%s=%q}", l.GetName(), l.GetValue())
				}
				p.samples[key] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
		g.mu.Lock()
		g.pushes = append(g.pushes, p)
		g.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *pushgateway) all() []pushed {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.pushes)
}

// TestOneShotPushes: a one-shot run adds its metrics to the Pushgateway's ayrbridge_replay job;
// a failed one leaves the last success time out, so the gateway keeps the last good run's.
func TestOneShotPushes(t *testing.T) {
	evs := events("p", 6, time.Now())
	w := newWorld(t, time.Hour, map[string][]event{"": evs})
	g := newPushgateway(t)
	env := map[string]string{"REPLAY_PUSHGATEWAY_URL": g.URL}
	if _, err := w.replay(t, env); err != nil {
		t.Fatal(err)
	}
	env["AYRSHARE_API_KEY"] = "wrong-key-0000000000000"
	if _, err := w.replay(t, env); err == nil {
		t.Fatal("a run with a wrong key succeeded")
	}
	pushes := g.all()
	if len(pushes) != 2 {
		t.Fatalf("%d pushes, want one per run", len(pushes))
	}
	for i, p := range pushes {
		if p.method != http.MethodPost || p.path != "/metrics/job/ayrbridge_replay" {
			t.Errorf("push %d: %s %s, want POST /metrics/job/ayrbridge_replay (add, so the other families stay)", i+1, p.method, p.path)
		}
	}
	ok, failed := pushes[0].samples, pushes[1].samples
	if ok[`ayrbridge_replay_passes_total{result="ok"}`] != 1 || ok[`ayrbridge_replay_published_events_total{action="social"}`] != 3 ||
		ok[`ayrbridge_replay_missing_events_total{action="scheduled"}`] != 3 || ok["ayrbridge_replay_interval_seconds"] != 0 {
		t.Errorf("the good run pushed %v", ok)
	}
	if age := time.Since(time.Unix(int64(ok["ayrbridge_replay_last_success_timestamp_seconds"]), 0)); age > time.Minute {
		t.Errorf("the good run pushed a last success %s old", age)
	}
	if failed[`ayrbridge_replay_passes_total{result="error"}`] != 1 || failed[`ayrbridge_replay_history_requests_total{code="401"}`] != 1 {
		t.Errorf("the failed run pushed %v", failed)
	}
	if _, ok := failed["ayrbridge_replay_last_success_timestamp_seconds"]; ok {
		t.Errorf("the failed run pushed a last success time")
	}
	for k := range ok {
		if strings.HasPrefix(k, "process_") || strings.HasPrefix(k, "go_") {
			t.Errorf("pushed %s: a finished job's process metrics mean nothing", k)
		}
	}
}

// TestMetricNamesMatchRulesAndDashboard scrapes a continuous replay and checks that the alert
// rules and the Grafana dashboard name only ayrbridge_replay_ families it exports, and that the
// dashboard shows every one of them.
func TestMetricNamesMatchRulesAndDashboard(t *testing.T) {
	w := newWorld(t, time.Hour, map[string][]event{"": events("n", 2, time.Now())})
	r := w.continuous(t, nil, "--every", "1s")
	waitPasses(t, r.metrics, 1, 0)
	res, err := http.Get(r.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(res.Body)
	res.Body.Close()
	exported := metricstest.Families(text, regexp.MustCompile(`(?m)^# TYPE (ayrbridge_replay_\w+) `))
	if len(exported) != 10 {
		t.Fatalf("exported %d ayrbridge_replay_ families, want 10: %v", len(exported), exported)
	}
	used := regexp.MustCompile(`(ayrbridge_replay_\w+)`)
	for _, file := range []string{"../../deploy/grafana/ayrbridge.json", "../../deploy/prometheus/alerts.yaml"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		names := metricstest.Families(b, used)
		for _, n := range names {
			if !slices.Contains(exported, n) {
				t.Errorf("%s uses %s, which the replay does not export (it does %v)", file, n, exported)
			}
		}
		if strings.HasSuffix(file, ".json") && !slices.Equal(names, exported) {
			t.Errorf("the dashboard shows %v\nthe replay exports %v", names, exported)
		}
	}
}
