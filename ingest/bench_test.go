package ingest

import (
	"context"
	"net"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
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
// the publish stubbed out. Run: go test ./ingest -bench Handler -benchmem
func BenchmarkHandler(b *testing.B) {
	for _, signed := range []bool{false, true} {
		name := "unsigned"
		if signed {
			name = "signed"
		}
		b.Run(name, func(b *testing.B) {
			m, err := NewMetrics(prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			opts := []Option{WithMetrics(m)}
			body := fixture(b, "messages_message_created.json") // has a hookId, like most deliveries
			if signed {
				opts = append(opts, WithSecrets("k"))
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
			if signed {
				req.Header.Set(HeaderSignature, sign("k", body))
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
