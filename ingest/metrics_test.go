package ingest

import (
	"net/http"
	"strings"
	"testing"
)

func TestMetricsAfterTraffic(t *testing.T) {
	limits := defaultLimits
	limits.MaxBodyBytes = 2048
	pub := &fakePublisher{}
	srv := startServer(t, pub, limits, nil, WithSecrets("k"))
	post := func(body string, signed bool) {
		t.Helper()
		h := map[string]string{}
		if signed {
			h[HeaderSignature] = sign("k", []byte(body))
		}
		postJSON(t, srv.URL+"/webhook", []byte(body), h)
	}
	post(`{"action":"scheduled","hookId":"m1"}`, true)
	post(`{"action":"social","type":"link","hookId":"m2"}`, true)
	post(`{"action":"comments","hookId":"m3"}`, true)  // undocumented: counted as other
	post(`{"action":"made-up-1","hookId":"m4"}`, true) // undocumented: counted as other
	pub.dup = true
	post(`{"action":"scheduled","hookId":"m1"}`, true)
	pub.dup = false
	post(`{"action":"scheduled","hookId":"m5"}`, false) // 401
	post(`{"action":"scheduled"`, true)                 // 400
	pub.err = errStoreDown
	post(`{"action":"feed","hookId":"m6"}`, true) // 503
	pub.err = nil
	do(t, http.MethodGet, srv.URL+"/webhook", nil, nil) // 405
	rawRequest(t, srv.Addr, "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\n\r\n")

	r, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := r.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	text := b.String()
	want := []string{
		`ayrbridge_http_requests_total{code="200"} 5`,
		`ayrbridge_http_requests_total{code="400"} 1`,
		`ayrbridge_http_requests_total{code="401"} 1`,
		`ayrbridge_http_requests_total{code="405"} 1`,
		`ayrbridge_http_requests_total{code="413"} 1`,
		`ayrbridge_http_requests_total{code="503"} 1`,
		`ayrbridge_events_total{action="scheduled"} 2`,
		`ayrbridge_events_total{action="social"} 1`,
		`ayrbridge_events_total{action="other"} 2`,
		`ayrbridge_events_total{action="feed"} 0`,
		`ayrbridge_duplicates_total 1`,
		`ayrbridge_signature_failures_total{reason="missing"} 1`,
		`ayrbridge_signature_failures_total{reason="mismatch"} 0`,
		`ayrbridge_publish_duration_seconds_count 6`,
		`ayrbridge_http_in_flight_requests 0`,
	}
	for _, line := range want {
		if !strings.Contains(text, line+"\n") {
			t.Errorf("metrics lack %q", line)
		}
	}
	if strings.Contains(text, "made-up-1") || strings.Contains(text, `action="comments"`) {
		t.Error("an undocumented action became a label value")
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", text)
	}
}
