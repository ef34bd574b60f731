package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/publish"
	"github.com/ayrbridge/ayrbridge/publish/cenats"
	"github.com/ayrbridge/ayrbridge/schema"
)

// bridge is a bridge started in-process by run.
type bridge struct {
	URL  string // http://host:port
	NATS string // embedded server's client URL, if any
	stop context.CancelFunc
	done chan error
}

// startBridge runs the bridge with environ on loopback ports until the test ends.
func startBridge(t *testing.T, environ map[string]string) *bridge {
	t.Helper()
	env := map[string]string{
		"BRIDGE_LISTEN":        "127.0.0.1:0",
		"NATS_EMBEDDED_LISTEN": "127.0.0.1:0",
		"NATS_EMBEDDED_DIR":    t.TempDir(),
	}
	for k, v := range environ {
		env[k] = v
	}
	cfg, err := loadConfig(env)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &bridge{stop: cancel, done: make(chan error, 1)}
	started := make(chan addrs, 1)
	go func() { b.done <- run(ctx, cfg, zerolog.Nop(), func(a addrs) { started <- a }) }()
	select {
	case a := <-started:
		b.URL, b.NATS = "http://"+a.HTTP, a.NATS
		if cfg.TLSCert != "" {
			b.URL = "https://" + a.HTTP
		}
	case err := <-b.done:
		t.Fatalf("bridge stopped at start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("bridge did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-b.done:
		case <-time.After(30 * time.Second):
			t.Error("bridge did not stop")
		}
	})
	if cfg.TLSCert == "" { // over HTTPS, only the test's client trusts the certificate
		natstest.Eventually(t, 10*time.Second, ready(b.URL))
	}
	return b
}

type answer struct {
	Status    int
	ID        string `json:"id"`
	Subject   string `json:"subject"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
	Error     string `json:"error"`
}

func post(t testing.TB, url string, body []byte, header map[string]string) answer {
	t.Helper()
	a, err := tryPost(url, body, header)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func tryPost(url string, body []byte, header map[string]string) (answer, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return answer{}, err
	}
	a := answer{Status: res.StatusCode}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("answer %d is not JSON: %q", res.StatusCode, b)
	}
	return a, nil
}

func fixtures(t testing.TB) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("..", "..", "schema", "testdata", "fixtures", "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("fixtures: %v", err)
	}
	out := make(map[string][]byte, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

func streamJS(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	return natstest.ConnectURL(t, url)
}

// TestEndToEndEmbedded posts every seed example to a bridge on its embedded default and reads
// each back from the stream through sdk-go's NATS binding.
func TestEndToEndEmbedded(t *testing.T) {
	b := startBridge(t, nil)
	fx := fixtures(t)
	ids := map[string]string{} // ce-id -> fixture
	for name, body := range fx {
		a := post(t, b.URL+"/webhook", body, map[string]string{"X-Ayrshare-Delivery-Id": "dlv-" + name})
		_, seen := ids[a.ID] // two documented examples share a hookId: the second is a duplicate
		if a.Status != 200 || a.Duplicate != seen || a.Seq == 0 {
			t.Fatalf("%s: %+v", name, a)
		}
		if !seen {
			ids[a.ID] = name
		}
	}
	// Redelivery: same bodies again, all duplicates, nothing new stored.
	for name, body := range fx {
		if a := post(t, b.URL+"/webhook", body, nil); a.Status != 200 || !a.Duplicate {
			t.Fatalf("redelivered %s: %+v", name, a)
		}
	}
	js := streamJS(t, b.NATS)
	msgs := natstest.Messages(t, js, "AYRSHARE")
	if len(msgs) != len(ids) || len(ids) < 20 {
		t.Fatalf("stream holds %d messages, want %d (from %d fixtures)", len(msgs), len(ids), len(fx))
	}
	for _, m := range msgs {
		ce, err := cenats.DecodeMsg(t.Context(), &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
		if err != nil {
			t.Fatal(err)
		}
		name, ok := ids[ce.ID()]
		if !ok {
			t.Fatalf("stored id %s was never answered", ce.ID())
		}
		body := fx[name]
		want, _ := schema.NewEvent(body, schema.Meta{})
		if !bytes.Equal(ce.Data(), body) {
			t.Errorf("%s: stored data is not the body byte for byte", name)
		}
		if m.Subject != want.Subject || ce.Type() != want.Type || ce.Source() != want.Source || ce.SpecVersion() != "1.0" ||
			ce.DataContentType() != "application/json" || m.Header.Get("Nats-Msg-Id") != ce.ID() {
			t.Errorf("%s: stored %s %s %s %s", name, m.Subject, ce.Type(), ce.Source(), ce.DataContentType())
		}
		if want.Env.Created != "" && !ce.Time().Equal(want.Time) {
			t.Errorf("%s: ce-time %v, want created %v", name, ce.Time(), want.Time)
		}
		if got := ce.Extensions()["deliveryid"]; got != "dlv-"+name {
			t.Errorf("%s: deliveryid extension %v", name, got)
		}
		if err := ce.Validate(); err != nil {
			t.Errorf("%s: invalid CloudEvent: %v", name, err)
		}
	}
}

func TestRefusedRequestsStoreNothing(t *testing.T) {
	b := startBridge(t, map[string]string{"AYRSHARE_WEBHOOK_SECRETS": "k1,k2", "BRIDGE_MAX_BODY_BYTES": "2048"})
	good := []byte(`{"action":"feed","hookId":"ok"}`)
	tests := map[string]struct {
		method, ct string
		body       []byte
		header     map[string]string
		status     int
	}{
		"malformed":     {"POST", "application/json", []byte(`{`), map[string]string{"X-Authorization-Content-SHA256": sign("k1", []byte(`{`))}, 400},
		"not an object": {"POST", "application/json", []byte(`[]`), map[string]string{"X-Authorization-Content-SHA256": sign("k1", []byte(`[]`))}, 400},
		"no action":     {"POST", "application/json", []byte(`{"a":1}`), map[string]string{"X-Authorization-Content-SHA256": sign("k1", []byte(`{"a":1}`))}, 400},
		"unsigned":      {"POST", "application/json", good, nil, 401},
		"bad signature": {"POST", "application/json", good, map[string]string{"X-Authorization-Content-SHA256": sign("k3", good)}, 401},
		"GET":           {"GET", "application/json", nil, nil, 405},
		"too large":     {"POST", "application/json", []byte(`{"action":"feed","x":"` + strings.Repeat("a", 3000) + `"}`), nil, 413},
		"text/plain":    {"POST", "text/plain", good, map[string]string{"X-Authorization-Content-SHA256": sign("k1", good)}, 415},
	}
	for name, tt := range tests {
		req, _ := http.NewRequest(tt.method, b.URL+"/webhook", bytes.NewReader(tt.body))
		req.Header.Set("Content-Type", tt.ct)
		for k, v := range tt.header {
			req.Header.Set(k, v)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Error string }
		err = json.NewDecoder(res.Body).Decode(&e)
		res.Body.Close()
		if res.StatusCode != tt.status || err != nil || e.Error == "" {
			t.Errorf("%s: %d %q (%v), want %d with a JSON error", name, res.StatusCode, e.Error, err, tt.status)
		}
	}
	if a := post(t, b.URL+"/webhook", good, map[string]string{"X-Authorization-Content-SHA256": sign("k2", good)}); a.Status != 200 {
		t.Fatalf("signed with the second secret: %+v", a)
	}
	if n := len(natstest.Messages(t, streamJS(t, b.NATS), "AYRSHARE")); n != 1 {
		t.Fatalf("stream holds %d messages, want only the accepted one", n)
	}
}

func TestExistingIncompatibleStreamStopsTheBridge(t *testing.T) {
	ns := natstest.RunServer(t, "")
	_, js := natstest.Connect(t, ns)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "AYRSHARE", Subjects: []string{"ayrshare.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(map[string]string{"NATS_URL": ns.ClientURL(), "BRIDGE_LISTEN": "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- run(t.Context(), cfg, zerolog.Nop(), nil) }()
	select {
	case err := <-done:
		if !errors.Is(err, publish.ErrStreamIncompatible) || !strings.Contains(strings.ToLower(err.Error()), "memory") {
			t.Fatalf("run = %v, want ErrStreamIncompatible naming the storage", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("bridge kept running on an incompatible stream")
	}
}

// TestGracefulShutdown cancels the bridge while clients post: every request is answered 200
// (and stored) or refused (and not stored), and run returns nil.
func TestGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	b := startBridge(t, map[string]string{"NATS_EMBEDDED_DIR": dir})
	var (
		mu       sync.Mutex
		acked    = map[string]bool{}
		refused  int
		requests int
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	for c := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("g%d-%d", c, i)
				a, err := tryPost(b.URL+"/webhook", fmt.Appendf(nil, `{"action":"feed","hookId":%q}`, id), nil)
				mu.Lock()
				requests++
				switch {
				case err == nil && a.Status == 200:
					acked[id] = true
				case err != nil || a.Status == 503:
					refused++
				default:
					t.Errorf("request %s: %+v %v", id, a, err)
				}
				mu.Unlock()
				if err != nil {
					return // the listener is closed
				}
			}
		})
	}
	// Stop once the clients are well under way, not after a guess at how long that takes.
	natstest.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(acked) < 100 {
			return fmt.Errorf("%d requests acknowledged", len(acked))
		}
		return nil
	})
	b.stop()
	select {
	case err := <-b.done:
		if err != nil {
			t.Fatalf("run after shutdown = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("shutdown hung")
	}
	close(stop)
	wg.Wait()
	b.done <- nil // for the cleanup
	if len(acked) == 0 {
		t.Fatal("no request was acknowledged before shutdown")
	}
	ns := natstest.RunServer(t, dir)
	_, js := natstest.Connect(t, ns)
	stored := map[string]int{}
	for _, m := range natstest.Messages(t, js, "AYRSHARE") {
		stored[m.Header.Get(cenats.HeaderID)]++
	}
	for id := range acked {
		if stored[id] != 1 {
			t.Errorf("acknowledged %s stored %d times", id, stored[id])
		}
	}
	t.Logf("%d requests: %d acknowledged, %d refused, %d stored", requests, len(acked), refused, len(stored))
}

func sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// client bounds every request of these tests: a bridge that stops answering fails the
// test (or the poll retries) instead of hanging it. No request that works comes near it.
var client = &http.Client{Timeout: 30 * time.Second}

func tryGet(url string) (int, error) {
	res, err := client.Get(url)
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	return res.StatusCode, nil
}

// ready is a poll for natstest.Eventually: nil once the bridge at url answers /readyz 200.
func ready(url string) func() error {
	return func() error {
		code, err := tryGet(url + "/readyz")
		if err == nil && code != 200 {
			err = fmt.Errorf("readyz %d", code)
		}
		return err
	}
}

func errNotYet(format string, args ...any) error { return fmt.Errorf(format, args...) }

// TestStreamNamedError: any stream name works, including one that puts "error" in every ack.
func TestStreamNamedError(t *testing.T) {
	b := startBridge(t, map[string]string{"NATS_STREAM": "error"})
	body := fixtures(t)["social_link.json"]
	for i, wantDup := range []bool{false, true} {
		a := post(t, b.URL+"/webhook", body, nil)
		if a.Status != 200 || a.Seq != 1 || a.Duplicate != wantDup {
			t.Fatalf("post %d: %+v, want 200, seq 1, duplicate %v", i, a, wantDup)
		}
	}
	if got := len(natstest.Messages(t, streamJS(t, b.NATS), "error")); got != 1 {
		t.Fatalf("stream error holds %d messages, want 1", got)
	}
}
