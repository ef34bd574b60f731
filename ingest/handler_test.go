package ingest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ayrbridge/ayrbridge/internal/logtest"
	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/schema"
)

func TestWebhookStored(t *testing.T) {
	pub := &fakePublisher{}
	srv := startServer(t, pub, defaultLimits, nil)
	body := fixture(t, "messages_message_created.json")
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	r := postJSON(t, srv.URL+"/webhook", body, map[string]string{
		RequestDeliveryID: "del-1", RequestDeliveryAttempt: "2", "traceparent": tp, "tracestate": "vendor=1",
	})
	if r.Status != http.StatusOK {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	evs := pub.published()
	if len(evs) != 1 {
		t.Fatalf("published %d events, want 1", len(evs))
	}
	ev := evs[0]
	want, _ := schema.NewEvent(body, schema.Meta{})
	if ev.ID != want.ID || ev.Subject != "ayrshare.messages.messageCreated" || !bytes.Equal(ev.Data, body) {
		t.Errorf("published %s %s, want %s ayrshare.messages.messageCreated with the body", ev.ID, ev.Subject, want.ID)
	}
	if ev.Meta.DeliveryID != "del-1" || ev.Meta.DeliveryAttempt != "2" || ev.Meta.TraceParent != tp || ev.Meta.TraceState != "vendor=1" {
		t.Errorf("meta = %+v", ev.Meta)
	}
	if r.JSON["id"] != want.ID || r.JSON["subject"] != ev.Subject || r.JSON["seq"] != 1.0 || r.JSON["duplicate"] != false {
		t.Errorf("answer %s", r.Body)
	}
	pub.dup = true
	r = postJSON(t, srv.URL+"/webhook", body, nil)
	if r.Status != http.StatusOK || r.JSON["duplicate"] != true {
		t.Errorf("duplicate answer %d %s", r.Status, r.Body)
	}
}

func TestTraceParentValidated(t *testing.T) {
	tests := map[string]string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future": "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra":  "",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01":        "",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01":        "",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":        "",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01":        "",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7":           "",
		"garbage": "",
	}
	for in, want := range tests {
		if got := traceParent([]byte(in)); got != want {
			t.Errorf("traceParent(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRefusals(t *testing.T) {
	const limit = 4096
	limits := defaultLimits
	limits.MaxBodyBytes = limit
	pub := &fakePublisher{}
	srv := startServer(t, pub, limits, nil)
	good := []byte(`{"action":"feed","hookId":"h"}`)
	tests := map[string]struct {
		method string
		path   string
		header map[string]string
		body   []byte
		status int
	}{
		"GET":                 {http.MethodGet, "/webhook", nil, nil, 405},
		"PUT":                 {http.MethodPut, "/webhook", map[string]string{"Content-Type": "application/json"}, good, 405},
		"DELETE":              {http.MethodDelete, "/webhook", nil, nil, 405},
		"PATCH":               {http.MethodPatch, "/webhook", nil, good, 405},
		"text/plain":          {http.MethodPost, "/webhook", map[string]string{"Content-Type": "text/plain"}, good, 415},
		"form":                {http.MethodPost, "/webhook", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, good, 415},
		"multipart":           {http.MethodPost, "/webhook", map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, good, 415},
		"text/json-ish":       {http.MethodPost, "/webhook", map[string]string{"Content-Type": "text/json"}, good, 415},
		"malformed JSON":      {http.MethodPost, "/webhook", nil, []byte(`{"action":`), 400},
		"empty body":          {http.MethodPost, "/webhook", nil, nil, 400},
		"array":               {http.MethodPost, "/webhook", nil, []byte(`[{"action":"feed"}]`), 400},
		"number":              {http.MethodPost, "/webhook", nil, []byte(`42`), 400},
		"action missing":      {http.MethodPost, "/webhook", nil, []byte(`{"type":"link"}`), 400},
		"action empty":        {http.MethodPost, "/webhook", nil, []byte(`{"action":""}`), 400},
		"action not a string": {http.MethodPost, "/webhook", nil, []byte(`{"action":["feed"]}`), 400},
		"hookId with CRLF":    {http.MethodPost, "/webhook", nil, []byte(`{"action":"feed","hookId":"a\r\nb"}`), 400},
		"body over the limit": {http.MethodPost, "/webhook", nil, []byte(`{"action":"feed","pad":"` + strings.Repeat("x", limit) + `"}`), 413},
		"unknown path":        {http.MethodPost, "/hooks", nil, good, 404},
		"POST healthz":        {http.MethodPost, "/healthz", nil, good, 405},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			header := map[string]string{"Content-Type": "application/json"}
			for k, v := range tt.header {
				header[k] = v
			}
			r := do(t, tt.method, srv.URL+tt.path, header, tt.body)
			requireRefusal(t, r, tt.status)
			if tt.status == 405 && r.Header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
	if n := len(pub.published()); n != 0 {
		t.Fatalf("refused requests published %d events", n)
	}
	accepted := map[string]string{
		"charset":        "application/json; charset=utf-8",
		"upper case":     "Application/JSON",
		"cloudevents":    "application/cloudevents+json",
		"no type at all": "",
	}
	for name, ct := range accepted {
		r := do(t, http.MethodPost, srv.URL+"/webhook", map[string]string{"Content-Type": ct}, good)
		if r.Status != 200 {
			t.Errorf("%s (%q): status %d, want 200", name, ct, r.Status)
		}
	}
}

func TestUnavailable(t *testing.T) {
	pub := &fakePublisher{err: fmt.Errorf("%w", errStoreDown)}
	srv := startServer(t, pub, defaultLimits, nil, WithRetryAfter(7*time.Second))
	r := postJSON(t, srv.URL+"/webhook", []byte(`{"action":"feed"}`), nil)
	requireRefusal(t, r, http.StatusServiceUnavailable)
	if r.Header.Get("Retry-After") != "7" {
		t.Errorf("Retry-After = %q, want 7", r.Header.Get("Retry-After"))
	}
	if strings.Contains(string(r.Body), "responders") {
		t.Errorf("503 leaks the internal cause: %s", r.Body)
	}
}

// TestConcurrentPublishes shows requests do not queue behind one another: every publish waits
// until all of them are in flight at once, which a serialising handler would never reach.
func TestConcurrentPublishes(t *testing.T) {
	const n = 32
	var arrived sync.WaitGroup
	arrived.Add(n)
	all := make(chan struct{})
	go func() { arrived.Wait(); close(all) }()
	pub := &fakePublisher{block: func() {
		arrived.Done()
		select {
		case <-all:
		case <-time.After(10 * time.Second):
		}
	}}
	srv := startServer(t, pub, defaultLimits, nil)
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Go(func() {
			statuses[i] = postJSON(t, srv.URL+"/webhook", fmt.Appendf(nil, `{"action":"feed","hookId":"c%d"}`, i), nil).Status
		})
	}
	wg.Wait()
	select {
	case <-all:
	default:
		t.Fatal("the publishes never were all in flight together")
	}
	for i, s := range statuses {
		if s != 200 {
			t.Errorf("request %d: status %d", i, s)
		}
	}
	if got := len(pub.published()); got != n {
		t.Errorf("published %d, want %d", got, n)
	}
}

func TestServerLimits(t *testing.T) {
	limits := defaultLimits
	limits.MaxBodyBytes = 1024
	limits.MaxHeaderBytes = 4096
	pub := &fakePublisher{}
	srv := startServer(t, pub, limits, nil)
	tests := map[string]struct {
		raw    string
		status int
	}{
		"lying content length": {"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n{\"action\":", 413},
		"chunked over limit": {"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"800\r\n" + strings.Repeat("x", 0x800) + "\r\n0\r\n\r\n", 413},
		"oversized headers": {"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 8192) + "\r\n\r\n", 431},
		"garbage request":   {"HELLO\r\n\r\n", 400},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			status, body := rawRequest(t, srv.Addr, tt.raw)
			if status != tt.status {
				t.Fatalf("status %d, want %d (%q)", status, tt.status, body)
			}
			if !strings.Contains(body, `{"error":`) {
				t.Fatalf("answer is not a JSON error: %q", body)
			}
		})
	}
	if n := len(pub.published()); n != 0 {
		t.Fatalf("published %d events", n)
	}
}

// rawRequest writes raw to addr and returns the status and body of the answer.
func rawRequest(t testing.TB, addr, raw string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	defer res.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(res.Body)
	return res.StatusCode, b.String()
}

func TestHealthAndReadiness(t *testing.T) {
	var notReady error
	var mu sync.Mutex
	srv := startServer(t, &fakePublisher{}, defaultLimits, readinessOf(&mu, &notReady))
	if r := do(t, http.MethodGet, srv.URL+"/healthz", nil, nil); r.Status != 200 || r.JSON["status"] != "ok" {
		t.Fatalf("healthz %d %s", r.Status, r.Body)
	}
	if r := do(t, http.MethodGet, srv.URL+"/readyz", nil, nil); r.Status != 200 || r.JSON["status"] != "ready" {
		t.Fatalf("readyz %d %s", r.Status, r.Body)
	}
	mu.Lock()
	notReady = errStoreDown
	mu.Unlock()
	r := do(t, http.MethodGet, srv.URL+"/readyz", nil, nil)
	requireRefusal(t, r, 503)
	if r := do(t, http.MethodGet, srv.URL+"/healthz", nil, nil); r.Status != 200 {
		t.Fatalf("healthz %d while not ready: liveness must not depend on NATS", r.Status)
	}
}

func TestLogsCarryNoSecrets(t *testing.T) {
	var logs logtest.Buffer
	const secret = "s3cr3t-value-for-test"
	body := []byte(`{"action":"feed","hookId":"x1"}`)
	good := sign(secret, body)
	wrong := sign("other", body)
	pub := &fakePublisher{}
	srv := startServer(t, pub, defaultLimits, nil, WithSecrets(secret), WithLogger(zerolog.New(&logs).Level(zerolog.TraceLevel)))
	postJSON(t, srv.URL+"/webhook", body, map[string]string{HeaderSignature: good})
	postJSON(t, srv.URL+"/webhook", body, map[string]string{HeaderSignature: wrong})
	postJSON(t, srv.URL+"/webhook", body, map[string]string{HeaderSignatureV2: "v1=" + wrong + ",v1=" + good[:40]})
	pub.err = errStoreDown
	postJSON(t, srv.URL+"/webhook", body, map[string]string{HeaderSignature: good})
	out := logs.String()
	if !strings.Contains(out, "webhook refused") || !strings.Contains(out, "publish failed") {
		t.Fatalf("expected refusal and failure lines in the log, got:\n%s", out)
	}
	for _, leak := range []string{secret, good, wrong, good[:40], wrong[:16], good[:16]} {
		if strings.Contains(out, leak) {
			t.Errorf("log contains %q:\n%s", leak, out)
		}
	}
}

func TestConnectionLimit(t *testing.T) {
	limits := defaultLimits
	limits.MaxConns = 4
	srv := startServer(t, &fakePublisher{}, limits, nil)
	var held []net.Conn
	for range limits.MaxConns {
		c, err := net.Dial("tcp", srv.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	// Each held connection is served: one request on it proves the server took it.
	for _, c := range held {
		_, _ = c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("held connection: %v %v", res, err)
		}
		res.Body.Close()
	}
	status, body := rawRequest(t, srv.Addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	if status != 503 || !strings.Contains(body, `{"error":`) {
		t.Fatalf("connection over the limit: %d %q, want a JSON 503", status, body)
	}
	held[0].Close()
	natstest.Eventually(t, 5*time.Second, func() error {
		if status, _ := rawRequest(t, srv.Addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); status != 200 {
			return fmt.Errorf("status %d after a slot was freed", status)
		}
		return nil
	})
}
