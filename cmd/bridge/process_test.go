package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/internal/proc"
	"github.com/ayrbridge/ayrbridge/internal/proctest"
	"github.com/ayrbridge/ayrbridge/publish/cenats"
)

func TestMain(m *testing.M) { proctest.Main(m) }

// buildBridge compiles this command, once for all the tests of this binary.
func buildBridge(t *testing.T) string {
	t.Helper()
	proctest.SkipShort(t, "builds and runs the bridge binary")
	return proctest.Build(t, "./cmd/bridge")
}

// bridgeProc is a bridge running as a child process.
type bridgeProc struct {
	*proc.Proc
	URL  string // http://host:port
	NATS string // the embedded server's client URL, when embedded
}

// startProc starts the binary with environ and waits until it accepts webhooks and is ready.
func startProc(t *testing.T, bin string, environ map[string]string) *bridgeProc {
	t.Helper()
	env := []string{"BRIDGE_LISTEN=127.0.0.1:0", "NATS_EMBEDDED_LISTEN=127.0.0.1:0", "LOG_LEVEL=info"}
	for k, v := range environ {
		env = append(env, k+"="+v)
	}
	addrs := make(chan [2]string, 1)
	var nats string // read only by the line callback's goroutine
	p := &bridgeProc{Proc: proctest.Start(t, proc.Config{Bin: bin, Env: env, Line: func(b []byte) {
		var line struct{ Message, Addr, URL, Scheme string }
		if json.Unmarshal(b, &line) != nil {
			return
		}
		switch line.Message {
		case "embedded nats with jetstream started":
			nats = line.URL
		case "accepting webhooks on /webhook":
			addrs <- [2]string{line.Scheme + "://" + line.Addr, nats}
		}
	}})}
	select {
	case a := <-addrs:
		p.URL, p.NATS = a[0], a[1]
		if strings.HasPrefix(p.URL, "https:") {
			return p // the test's own client, trusting its CA, checks readiness
		}
	case <-p.Done():
		t.Fatalf("bridge exited at start: %v", p.Err())
	case <-time.After(30 * time.Second):
		t.Fatal("bridge did not start")
	}
	natstest.Eventually(t, 15*time.Second, ready(p.URL))
	return p
}

// load posts unique webhooks from clients goroutines until stop is closed, recording the ids
// JetStream acknowledged (2xx).
type load struct {
	mu       sync.Mutex
	acked    map[string]bool
	failed   map[string]bool // answered 503, or the connection failed
	outcomes []outcome
	sent     atomic.Int64
	refused  atomic.Int64
	bad      atomic.Int64 // answers that are neither 2xx nor 503 nor a refused connection
	wg       sync.WaitGroup
	stop     chan struct{}
}

func startLoad(url string, clients int, prefix string) *load {
	l := &load{acked: map[string]bool{}, failed: map[string]bool{}, stop: make(chan struct{})}
	for c := range clients {
		l.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				id := fmt.Sprintf("%s-%d-%d", prefix, c, i)
				l.sent.Add(1)
				t0 := time.Now()
				a, err := tryPost(url+"/webhook", loadBody(id), nil)
				l.mu.Lock()
				l.outcomes = append(l.outcomes, outcome{at: time.Now(), took: time.Since(t0), status: a.Status})
				l.mu.Unlock()
				switch {
				case err == nil && a.Status == 200:
					l.mu.Lock()
					l.acked[id] = true
					l.mu.Unlock()
				case err != nil || a.Status == 503:
					l.refused.Add(1)
					l.mu.Lock()
					l.failed[id] = true
					l.mu.Unlock()
					time.Sleep(5 * time.Millisecond)
				default:
					l.bad.Add(1)
				}
			}
		})
	}
	return l
}

// loadBody is the webhook the load sends for id.
func loadBody(id string) []byte {
	return fmt.Appendf(nil, `{"action":"scheduled","status":"success","hookId":%q}`, id)
}

// outcome is one answered (or failed, status 0) request.
type outcome struct {
	at     time.Time
	took   time.Duration
	status int
}

// longestOutage is the longest time from a failed answer to the next 2xx, and the slowest
// request of the run.
func (l *load) longestOutage() (outage, slowest time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	os := slices.Clone(l.outcomes)
	slices.SortFunc(os, func(a, b outcome) int { return a.at.Compare(b.at) })
	var since time.Time
	for _, o := range os {
		slowest = max(slowest, o.took)
		switch {
		case o.status == 200 && !since.IsZero():
			outage = max(outage, o.at.Sub(since))
			since = time.Time{}
		case o.status != 200 && since.IsZero():
			since = o.at
		}
	}
	return outage, slowest
}

func (l *load) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

func (l *load) finish() map[string]bool {
	close(l.stop)
	l.wg.Wait()
	return l.acked
}

// waitAcked blocks until n events were acknowledged.
func (l *load) waitAcked(t *testing.T, n int) {
	t.Helper()
	natstest.Eventually(t, 30*time.Second, func() error {
		if got := l.ackedCount(); got < n {
			return fmt.Errorf("%d of %d acknowledged", got, n)
		}
		return nil
	})
}

// requireStoredOnce checks every acknowledged id is in the stream exactly once, and no id is
// there twice.
func requireStoredOnce(t *testing.T, natsURL string, acked map[string]bool) {
	t.Helper()
	stored := map[string]int{}
	for _, m := range natstest.Messages(t, streamJS(t, natsURL), "AYRSHARE") {
		stored[m.Header.Get(cenats.HeaderID)]++
	}
	lost, dups := 0, 0
	for id := range acked {
		if stored[id] == 0 {
			lost++
		}
	}
	for _, n := range stored {
		if n > 1 {
			dups++
		}
	}
	t.Logf("acknowledged %d, stored %d distinct, lost %d, duplicated %d", len(acked), len(stored), lost, dups)
	if lost != 0 || dups != 0 {
		t.Fatalf("lost %d acknowledged events, %d stored twice", lost, dups)
	}
}

// TestSIGKILL kills a bridge under 32 concurrent clients, on its embedded server and on an
// external one, and starts it again on the same store: every acknowledged event is there,
// once, and the restarted bridge serves.
func TestSIGKILL(t *testing.T) {
	bin := buildBridge(t)
	tests := map[string]func(t *testing.T) (env map[string]string, natsURL func(*bridgeProc) string){
		"embedded": func(t *testing.T) (map[string]string, func(*bridgeProc) string) {
			return map[string]string{"NATS_EMBEDDED_DIR": t.TempDir()}, func(p *bridgeProc) string { return p.NATS }
		},
		"external": func(t *testing.T) (map[string]string, func(*bridgeProc) string) {
			ns := natstest.RunServer(t, "")
			return map[string]string{"NATS_URL": ns.ClientURL()}, func(*bridgeProc) string { return ns.ClientURL() }
		},
	}
	for name, setup := range tests {
		t.Run(name, func(t *testing.T) {
			env, natsURL := setup(t)
			p := startProc(t, bin, env)
			l := startLoad(p.URL, 32, "kill-"+name)
			l.waitAcked(t, 300)
			p.Kill()
			acked := l.finish()
			if l.bad.Load() != 0 {
				t.Fatalf("%d answers were neither 2xx nor 503", l.bad.Load())
			}
			again := startProc(t, bin, env)
			if a := post(t, again.URL+"/webhook", []byte(`{"action":"feed","hookId":"after-restart"}`), nil); a.Status != 200 {
				t.Fatalf("restarted bridge: %+v", a)
			}
			acked["after-restart"] = true
			t.Logf("sent %d", l.sent.Load())
			requireStoredOnce(t, natsURL(again), acked)
		})
	}
}

// TestSIGTERMUnderLoad stops a bridge with SIGTERM while 64 clients post: every request is
// answered 2xx and stored, or refused (503 or a refused connection) and not stored, and the
// process exits 0 within its shutdown timeout.
func TestSIGTERMUnderLoad(t *testing.T) {
	bin := buildBridge(t)
	dir := t.TempDir()
	p := startProc(t, bin, map[string]string{"NATS_EMBEDDED_DIR": dir, "BRIDGE_SHUTDOWN_TIMEOUT": "10s"})
	l := startLoad(p.URL, 64, "term")
	l.waitAcked(t, 300)
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	exitErr, exited := p.Wait(15 * time.Second)
	if !exited {
		t.Fatal("bridge did not exit within its shutdown timeout")
	}
	took := time.Since(signalled)
	acked := l.finish()
	if exitErr != nil {
		t.Fatalf("exit after SIGTERM: %v, want status 0", exitErr)
	}
	if l.bad.Load() != 0 {
		t.Fatalf("%d answers were neither 2xx nor 503", l.bad.Load())
	}
	again := startProc(t, bin, map[string]string{"NATS_EMBEDDED_DIR": dir})
	stored := map[string]int{}
	for _, m := range natstest.Messages(t, streamJS(t, again.NATS), "AYRSHARE") {
		stored[m.Header.Get(cenats.HeaderID)]++
	}
	for id := range l.failed {
		if stored[id] != 0 {
			t.Errorf("refused request %s was stored", id)
		}
	}
	t.Logf("exit 0 after %s; sent %d, acknowledged %d, refused %d", took.Round(time.Millisecond), l.sent.Load(), len(acked), len(l.failed))
	requireStoredOnce(t, again.NATS, acked)
}
