package ingest

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSignatures(t *testing.T) {
	const current, previous = "whsec-current", "whsec-previous"
	body := []byte(`{"action":"social","type":"link","hookId":"sig-1"}`)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ts := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	good, old, other := sign(current, body), sign(previous, body), sign("not-configured", body)
	tests := map[string]struct {
		header map[string]string
		skew   time.Duration
		status int
	}{
		"current secret":                 {map[string]string{HeaderSignature: good}, 0, 200},
		"previous secret (rotation)":     {map[string]string{HeaderSignature: old}, 0, 200},
		"upper-case hex":                 {map[string]string{HeaderSignature: strings.ToUpper(good)}, 0, 200},
		"missing":                        {nil, 0, 401},
		"empty":                          {map[string]string{HeaderSignature: ""}, 0, 401},
		"wrong secret":                   {map[string]string{HeaderSignature: other}, 0, 401},
		"truncated":                      {map[string]string{HeaderSignature: good[:63]}, 0, 401},
		"too long":                       {map[string]string{HeaderSignature: good + "00"}, 0, 401},
		"not hex":                        {map[string]string{HeaderSignature: strings.Repeat("zz", 32)}, 0, 401},
		"signature of another body":      {map[string]string{HeaderSignature: sign(current, []byte(`{"action":"social"}`))}, 0, 401},
		"sha256= prefix is not ours":     {map[string]string{HeaderSignature: "sha256=" + good}, 0, 401},
		"v2 single entry":                {map[string]string{HeaderSignatureV2: "v1=" + good}, 0, 200},
		"v2 several, last matches":       {map[string]string{HeaderSignatureV2: "v1=" + other + ", v1=" + old}, 0, 200},
		"v2 several, none matches":       {map[string]string{HeaderSignatureV2: "v1=" + other + ",v1=" + other[:10]}, 0, 401},
		"v2 unknown version only":        {map[string]string{HeaderSignatureV2: "v2=" + good}, 0, 401},
		"v2 garbage":                     {map[string]string{HeaderSignatureV2: ",,,v1=,="}, 0, 401},
		"bad v1 header, good v2":         {map[string]string{HeaderSignature: other, HeaderSignatureV2: "v1=" + good}, 0, 200},
		"timestamp within skew":          {map[string]string{HeaderSignature: good, HeaderTimestamp: ts(-4 * time.Minute)}, 5 * time.Minute, 200},
		"timestamp ahead within skew":    {map[string]string{HeaderSignature: good, HeaderTimestamp: ts(4 * time.Minute)}, 5 * time.Minute, 200},
		"timestamp too old":              {map[string]string{HeaderSignature: good, HeaderTimestamp: ts(-6 * time.Minute)}, 5 * time.Minute, 401},
		"timestamp too far ahead":        {map[string]string{HeaderSignature: good, HeaderTimestamp: ts(6 * time.Minute)}, 5 * time.Minute, 401},
		"timestamp missing when needed":  {map[string]string{HeaderSignature: good}, 5 * time.Minute, 401},
		"timestamp not a number":         {map[string]string{HeaderSignature: good, HeaderTimestamp: "yesterday"}, 5 * time.Minute, 401},
		"timestamp ignored without skew": {map[string]string{HeaderSignature: good, HeaderTimestamp: ts(-48 * time.Hour)}, 0, 200},
		"good timestamp, bad signature":  {map[string]string{HeaderSignature: other, HeaderTimestamp: ts(0)}, 5 * time.Minute, 401},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			pub := &fakePublisher{}
			srv := startServer(t, pub, defaultLimits, nil, WithSecrets(current, " ", previous),
				WithTimestampSkew(tt.skew), WithClock(func() time.Time { return now }))
			r := postJSON(t, srv.URL+"/webhook", body, tt.header)
			if tt.status != http.StatusOK {
				requireRefusal(t, r, tt.status)
				if n := len(pub.published()); n != 0 {
					t.Fatalf("refused request published %d events", n)
				}
				return
			}
			if r.Status != 200 || len(pub.published()) != 1 {
				t.Fatalf("status %d, %d published: %s", r.Status, len(pub.published()), r.Body)
			}
		})
	}
}

func TestSignaturesOffWithoutSecrets(t *testing.T) {
	pub := &fakePublisher{}
	srv := startServer(t, pub, defaultLimits, nil, WithSecrets("", "  "))
	r := postJSON(t, srv.URL+"/webhook", []byte(`{"action":"feed"}`), map[string]string{HeaderSignature: "nonsense"})
	if r.Status != 200 {
		t.Fatalf("status %d with verification off", r.Status)
	}
}
