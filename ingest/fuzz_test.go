package ingest

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// FuzzHandler drives the whole router with random methods, paths, content types, headers and
// bodies, with default and per-profile secrets: nothing may panic, nothing but a failing store
// may give a 5xx, every answer is a JSON object, and only a 200 publishes.
func FuzzHandler(f *testing.F) {
	profiles, _ := newProfileSecrets(f, profileDir(f, map[string]string{"fuzzref": "pk\npk-old\n"}), zerolog.Nop())
	f.Add("POST", "/webhook", "application/json", "prof", "", []byte(`{"action":"feed","refId":"fuzzref"}`), false)
	f.Add("POST", "/webhook", "application/json", "good", "", []byte(`{"action":"feed","refId":"fuzzref"}`), false)
	f.Add("POST", "/webhook", "application/json", "", "", []byte(`{"action":"feed","hookId":"a"}`), false)
	f.Add("POST", "/webhook", "application/json", "v1=00", "1700000000", []byte(`{"action":"social","type":"link"}`), true)
	f.Add("POST", "/webhook", "", "good", "", []byte(`{"action":"feed"}`), false)
	f.Add("GET", "/readyz", "", "", "", []byte(nil), false)
	f.Add("PUT", "/webhook", "text/plain", "", "", []byte(`[]`), false)
	f.Add("POST", "/webhook", "application/json; charset=utf-8", "", "", []byte(`{"action":"a\u0000"}`), false)
	f.Add("POST", "/metrics", "application/cloudevents+json", "", "", []byte(`{"action":"x","subAction":"y.z"}`), true)
	f.Fuzz(func(t *testing.T, method, path, contentType, sigV2, timestamp string, body []byte, storeDown bool) {
		pub := &fakePublisher{}
		if storeDown {
			pub.err = errStoreDown
		}
		reg := prometheus.NewRegistry()
		m, err := NewMetrics(reg)
		if err != nil {
			t.Fatal(err)
		}
		h, err := NewHandler(pub, WithMetrics(m), WithMaxBodyBytes(4096), WithSecrets("k"), WithProfileSecrets(profiles), WithTimestampSkew(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		routes := Routes(h, ReadinessFunc(func(context.Context) error { return nil }), nil)
		var req fasthttp.Request
		req.Header.SetMethod(method)
		req.SetRequestURI(path)
		req.Header.SetContentType(contentType)
		if strings.HasPrefix(sigV2, "good") {
			sigV2 = "v1=" + sign("k", body) + sigV2[4:]
		} else if strings.HasPrefix(sigV2, "prof") {
			sigV2 = "v1=" + sign("pk", body) + sigV2[4:]
		}
		req.Header.Set(HeaderSignatureV2, sigV2)
		req.Header.Set(HeaderTimestamp, timestamp)
		req.SetBody(body)
		var rc fasthttp.RequestCtx
		rc.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
		routes(&rc)
		status := rc.Response.StatusCode()
		if status >= 500 && !(status == 503 && storeDown) {
			t.Fatalf("status %d for %s %s %q: %s", status, method, path, body, rc.Response.Body())
		}
		out := rc.Response.Body()
		if !json.Valid(out) || out[0] != '{' {
			t.Fatalf("answer %d is not a JSON object: %q", status, out)
		}
		if n := len(pub.published()); (status == 200 && string(rc.Path()) == "/webhook") != (n == 1) {
			t.Fatalf("status %d with %d published", status, n)
		}
	})
}
