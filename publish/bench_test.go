package publish_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/publish"
)

// BenchmarkPublish is the bridge's publish path, 64 callers at once, against an in-process
// nats-server with file storage. Run: go test ./publish -run '^$' -bench Publish -cpuprofile cpu.prof
func BenchmarkPublish(b *testing.B) {
	ns := natstest.RunServer(b, "")
	nc, js := natstest.Connect(b, ns)
	if _, err := publish.EnsureStream(b.Context(), js, streamConfig()); err != nil {
		b.Fatal(err)
	}
	p := newPublisher(b, nc, "AYRSHARE")
	body := `{"action":"feed","hookId":"%d","pad":"` + strings.Repeat("x", 1200) + `"}`
	var n atomic.Int64
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ev := event(b, fmt.Sprintf(body, n.Add(1)))
			if _, _, err := p.Publish(b.Context(), ev); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
