package ingest

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/ayrbridge/ayrbridge/publish/cenats"
	"github.com/ayrbridge/ayrbridge/schema"
)

// nopPublisher acknowledges at once, so the benchmark measures the handler alone.
type nopPublisher struct{}

func (nopPublisher) Publish(_ context.Context, ev schema.Event) (uint64, bool, error) {
	_ = cenats.Msg(ev) // the headers every real publish builds
	return 1, false, nil
}

// BenchmarkHandler is one webhook through the router, checks, CloudEvent and metrics, with
// the publish stubbed out: unsigned, signed with the default secret, and signed by a profile
// among 1 or 1,000 with secrets of their own (the cost must not grow with their number).
// Run: go test ./ingest -bench Handler -benchmem
func BenchmarkHandler(b *testing.B) {
	body := fixture(b, "messages_message_created.json") // has a hookId, like most deliveries
	env, err := schema.Parse(body)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		profiles int // 0: the default secret signs
		signed   bool
	}{
		{"unsigned", 0, false}, {"signed", 0, true}, {"profiles=1", 1, true}, {"profiles=1000", 1000, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			m, err := NewMetrics(prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			opts := []Option{WithMetrics(m)}
			secret := "k"
			if c.signed {
				opts = append(opts, WithSecrets("k"))
			}
			if c.profiles > 0 {
				opts = append(opts, WithProfileSecrets(benchProfiles(b, env.RefID, c.profiles)))
				secret = benchSecret
			}
			h, err := NewHandler(nopPublisher{}, opts...)
			if err != nil {
				b.Fatal(err)
			}
			routes := Routes(h, ReadinessFunc(func(context.Context) error { return nil }), nil)
			var req fasthttp.Request
			req.Header.SetMethod("POST")
			req.SetRequestURI("/webhook")
			req.Header.SetContentType("application/json")
			req.Header.Set(RequestDeliveryID, "d-1")
			if c.signed {
				req.Header.Set(HeaderSignature, sign(secret, body))
			}
			req.SetBody(body)
			addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
			var rc fasthttp.RequestCtx
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				rc.Init(&req, addr, nil)
				routes(&rc)
				if rc.Response.StatusCode() != 200 {
					b.Fatalf("status %d: %s", rc.Response.StatusCode(), rc.Response.Body())
				}
			}
		})
	}
}

// benchSecret signs the benchmarks' webhooks: the second of the profile's two secrets, as
// during a rotation; every HMAC of the profile runs anyway.
const benchSecret = "profile-old"

// benchProfiles is n profiles with two secrets each, refID among them.
func benchProfiles(b *testing.B, refID string, n int) *ProfileSecrets {
	files := map[string]string{refID: "profile-new\n" + benchSecret + "\n"}
	for i := 1; i < n; i++ {
		files[fmt.Sprintf("%040x", i)] = fmt.Sprintf("secret-%d\nsecret-%d-old\n", i, i)
	}
	ps, _ := newProfileSecrets(b, profileDir(b, files), zerolog.Nop())
	if ps.Len() != n {
		b.Fatalf("%d profiles loaded, want %d", ps.Len(), n)
	}
	return ps
}

// BenchmarkVerify is the signature check alone, for a profile among 1 or 1,000 with secrets of
// their own: the lookup must not make it grow. Run: go test ./ingest -bench Verify
func BenchmarkVerify(b *testing.B) {
	body := fixture(b, "messages_message_created.json")
	env, err := schema.Parse(body)
	if err != nil {
		b.Fatal(err)
	}
	h := requestHeader(b, map[string]string{HeaderSignature: sign(benchSecret, body)})
	for _, n := range []int{1, 1000} {
		b.Run(fmt.Sprintf("profiles=%d", n), func(b *testing.B) {
			v := verifier{profiles: benchProfiles(b, env.RefID, n)}
			b.ReportAllocs()
			for b.Loop() {
				if err := v.verify(h, body, env.RefID); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
