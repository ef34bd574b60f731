package ingest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/ayrbridge/ayrbridge/schema"
)

// fakePublisher records what it is asked to publish and answers as told.
type fakePublisher struct {
	mu     sync.Mutex
	events []schema.Event
	err    error
	dup    bool
	block  func() // called inside Publish, before answering
}

func (p *fakePublisher) Publish(_ context.Context, ev schema.Event) (uint64, bool, error) {
	if p.block != nil {
		p.block()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return 0, false, p.err
	}
	ev.Data = bytes.Clone(ev.Data) // the request buffer is reused after the handler returns
	p.events = append(p.events, ev)
	return uint64(len(p.events)), p.dup, nil
}

func (p *fakePublisher) published() []schema.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]schema.Event(nil), p.events...)
}

// testServer is a bridge HTTP server on a loopback port.
type testServer struct {
	URL     string
	Addr    string
	Metrics *Metrics
	Reg     *prometheus.Registry
}

var defaultLimits = ServerConfig{
	MaxBodyBytes: DefaultMaxBodyBytes, MaxHeaderBytes: 8192, MaxConns: 1000,
	ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second,
}

// startServer serves a Handler over pub with the given limits and options until the test ends.
func startServer(t testing.TB, pub Publisher, limits ServerConfig, ready Readiness, opts ...Option) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(pub, append([]Option{WithMetrics(m), WithMaxBodyBytes(limits.MaxBodyBytes)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if ready == nil {
		ready = ReadinessFunc(func(context.Context) error { return nil })
	}
	srv, err := NewServer(Routes(h, ready, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})), limits, m, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, srv, limits.MaxConns, nil)
	return &testServer{URL: "http://" + addr, Addr: addr, Metrics: m, Reg: reg}
}

// serve runs srv on a loopback port as the bridge does, through LimitListener and, when tlsCfg
// is set, TLS, until the test ends; it returns the address.
func serve(t testing.TB, srv *fasthttp.Server, maxConns int, tlsCfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serving := LimitListener(ln, maxConns)
	if tlsCfg != nil {
		serving = tls.NewListener(serving, tlsCfg)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(serving) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.ShutdownWithContext(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after shutdown")
		}
	})
	return ln.Addr().String()
}

// response is an answer with its body read and, when JSON, decoded.
type response struct {
	Status int
	Header http.Header
	Body   []byte
	JSON   map[string]any
}

// do sends one request and reads the whole answer.
func do(t testing.TB, method, url string, header map[string]string, body []byte) response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := response{Status: res.StatusCode, Header: res.Header, Body: b}
	if len(b) > 0 && method != http.MethodHead {
		if err := json.Unmarshal(b, &r.JSON); err != nil {
			t.Fatalf("answer %d is not a JSON object: %q", res.StatusCode, b)
		}
	}
	return r
}

func postJSON(t testing.TB, url string, body []byte, header map[string]string) response {
	t.Helper()
	h := map[string]string{"Content-Type": "application/json"}
	for k, v := range header {
		h[k] = v
	}
	return do(t, http.MethodPost, url, h, body)
}

// requireRefusal checks a JSON error answer with status want.
func requireRefusal(t testing.TB, r response, want int) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("status %d, want %d (body %q)", r.Status, want, r.Body)
	}
	if msg, _ := r.JSON["error"].(string); msg == "" {
		t.Fatalf("answer %d has no JSON error: %q", r.Status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error content type %q, want application/json", ct)
	}
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "schema", "testdata", "fixtures", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

var errStoreDown = errors.New("nats: no responders available for request")

// readinessOf reports *err, read under mu, as readiness.
func readinessOf(mu *sync.Mutex, err *error) Readiness {
	return ReadinessFunc(func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		return *err
	})
}
