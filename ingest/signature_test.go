package ingest

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

const sigCurrent, sigPrevious = "whsec-current", "whsec-previous"

// sigNow is the verifier's clock in these tests, so timestamp rows do not depend on the time.
var sigNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// TestVerify runs every signature case against the verifier itself: it is a pure function of
// the headers, the body, the secrets and the clock, so no server is needed to test it.
func TestVerify(t *testing.T) {
	body := []byte(`{"action":"social","type":"link","hookId":"sig-1"}`)
	ts := func(d time.Duration) string { return strconv.FormatInt(sigNow.Add(d).Unix(), 10) }
	good, old, other := sign(sigCurrent, body), sign(sigPrevious, body), sign("not-configured", body)
	tests := map[string]struct {
		header map[string]string
		skew   time.Duration
		want   error // nil: accepted
	}{
		"current secret":                 {map[string]string{HeaderSignature: good}, 0, nil},
		"previous secret (rotation)":     {map[string]string{HeaderSignature: old}, 0, nil},
		"upper-case hex":                 {map[string]string{HeaderSignature: strings.ToUpper(good)}, 0, nil},
		"padded with spaces":             {map[string]string{HeaderSignature: good + "  "}, 0, nil},
		"missing":                        {nil, 0, errNoSignature},
		"empty":                          {map[string]string{HeaderSignature: ""}, 0, errBadSignature},
		"wrong secret":                   {map[string]string{HeaderSignature: other}, 0, errBadSignature},
		"truncated":                      {map[string]string{HeaderSignature: good[:63]}, 0, errBadSignature},
		"too long":                       {map[string]string{HeaderSignature: good + "00"}, 0, errBadSignature},
		"not hex":                        {map[string]string{HeaderSignature: strings.Repeat("zz", 32)}, 0, errBadSignature},
		"signature of another body":      {map[string]string{HeaderSignature: sign(sigCurrent, []byte(`{"action":"social"}`))}, 0, errBadSignature},
		"sha256= prefix is not ours":     {map[string]string{HeaderSignature: "sha256=" + good}, 0, errBadSignature},
		"v2 single entry":                {map[string]string{HeaderSignatureV2: "v1=" + good}, 0, nil},
		"v2 several, last matches":       {map[string]string{HeaderSignatureV2: "v1=" + other + ", v1=" + old}, 0, nil},
		"v2 several, none matches":       {map[string]string{HeaderSignatureV2: "v1=" + other + ",v1=" + other[:10]}, 0, errBadSignature},
		"v2 unknown version only":        {map[string]string{HeaderSignatureV2: "v2=" + good}, 0, errNoSignature},
		"v2 garbage":                     {map[string]string{HeaderSignatureV2: ",,,v1=,="}, 0, errBadSignature},
		"bad v1 header, good v2":         {map[string]string{HeaderSignature: other, HeaderSignatureV2: "v1=" + good}, 0, nil},
		"timestamp within skew":          {map[string]string{HeaderSignature: good, HeaderTimestamp: ts(-4 * time.Minute)}, 5 * time.Minute, nil},
		"timestamp ahead within skew":    {map[string]string{HeaderSignature: good, HeaderTimestamp: ts(4 * time.Minute)}, 5 * time.Minute, nil},
		"timestamp too old":              {map[string]string{HeaderSignature: good, HeaderTimestamp: ts(-6 * time.Minute)}, 5 * time.Minute, errStale},
		"timestamp too far ahead":        {map[string]string{HeaderSignature: good, HeaderTimestamp: ts(6 * time.Minute)}, 5 * time.Minute, errStale},
		"timestamp missing when needed":  {map[string]string{HeaderSignature: good}, 5 * time.Minute, errStale},
		"timestamp not a number":         {map[string]string{HeaderSignature: good, HeaderTimestamp: "yesterday"}, 5 * time.Minute, errStale},
		"timestamp ignored without skew": {map[string]string{HeaderSignature: good, HeaderTimestamp: ts(-48 * time.Hour)}, 0, nil},
		"good timestamp, bad signature":  {map[string]string{HeaderSignature: other, HeaderTimestamp: ts(0)}, 5 * time.Minute, errBadSignature},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			// The blank secret between the two is ignored, as the operator's list may hold one.
			h := newSignedHandler(t, &fakePublisher{}, WithSecrets(sigCurrent, " ", sigPrevious), WithTimestampSkew(tt.skew))
			err := h.verify.verify(requestHeader(t, tt.header), body, "")
			if !errors.Is(err, tt.want) { // errors.Is(err, nil) holds only for a nil err
				t.Fatalf("verify = %v, want %v", err, tt.want)
			}
			// Every refusal must be a 401: Ayrshare does not retry it, and a bad signature
			// will not become good.
			if err != nil && statusOf(err) != http.StatusUnauthorized {
				t.Fatalf("%v answers %d, want 401", err, statusOf(err))
			}
		})
	}
}

// TestSignaturesOffWithoutSecrets checks blank secrets leave verification off: the handler
// then stores a request whatever its signature header says.
func TestSignaturesOffWithoutSecrets(t *testing.T) {
	pub := &fakePublisher{}
	h := newSignedHandler(t, pub, WithSecrets("", "  "))
	if h.verify.enabled() {
		t.Fatal("verification on with only blank secrets")
	}
	var req fasthttp.Request
	req.Header.SetMethod(http.MethodPost)
	req.SetRequestURI("/webhook")
	req.Header.SetContentType("application/json")
	req.Header.Set(HeaderSignature, "nonsense")
	req.SetBody([]byte(`{"action":"feed"}`))
	var rc fasthttp.RequestCtx
	rc.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
	h.ServeFastHTTP(&rc)
	if s := rc.Response.StatusCode(); s != 200 || len(pub.published()) != 1 {
		t.Fatalf("status %d, %d published with verification off: %s", s, len(pub.published()), rc.Response.Body())
	}
}

// TestSignatureOverHTTP is the one signature case through a server: a refused signature is a
// JSON 401 that stores nothing, a good one is stored.
func TestSignatureOverHTTP(t *testing.T) {
	pub := &fakePublisher{}
	srv := startServer(t, pub, defaultLimits, nil, WithSecrets(sigCurrent, sigPrevious))
	body := []byte(`{"action":"social","type":"link","hookId":"sig-http"}`)
	r := postJSON(t, srv.URL+"/webhook", body, map[string]string{HeaderSignature: sign("not-configured", body)})
	requireRefusal(t, r, http.StatusUnauthorized)
	if n := len(pub.published()); n != 0 {
		t.Fatalf("refused request published %d events", n)
	}
	r = postJSON(t, srv.URL+"/webhook", body, map[string]string{HeaderSignature: sign(sigPrevious, body)})
	if r.Status != 200 || len(pub.published()) != 1 {
		t.Fatalf("status %d, %d published: %s", r.Status, len(pub.published()), r.Body)
	}
}

// newSignedHandler is a Handler over pub with opts and the tests' fixed clock.
func newSignedHandler(t testing.TB, pub Publisher, opts ...Option) *Handler {
	t.Helper()
	h, err := NewHandler(pub, append(opts, WithClock(func() time.Time { return sigNow }))...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// requestHeader parses header as fasthttp reads it off the wire, so an empty or padded value
// reaches the verifier exactly as a server would hand it over.
func requestHeader(t testing.TB, header map[string]string) *fasthttp.RequestHeader {
	t.Helper()
	var raw strings.Builder
	raw.WriteString("POST /webhook HTTP/1.1\r\nHost: x\r\n")
	for k, v := range header {
		raw.WriteString(k + ": " + v + "\r\n")
	}
	raw.WriteString("\r\n")
	var h fasthttp.RequestHeader
	if err := h.Read(bufio.NewReader(strings.NewReader(raw.String()))); err != nil {
		t.Fatalf("parse header: %v", err)
	}
	return &h
}
