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
// nats-server with file storage, lazy (the server's two-minute fsync) or syncing every write,
// with groups sent as atomic batches or one message at a time, and 8 or 2 groups in flight.
// Run: go test ./publish -run '^$' -bench Publish -benchtime 20000x
func BenchmarkPublish(b *testing.B) {
	for _, c := range []struct {
		sync     string // lazy, server (SyncAlways), group (a lazy server and a StoreSync)
		batches  bool
		inFlight int
	}{{"lazy", false, 8}, {"lazy", true, 8}, {"server", false, 8}, {"server", true, 8}, {"server", true, 2}, {"group", false, 8}, {"group", false, 2}} {
		b.Run(fmt.Sprintf("sync=%s/batches=%v/inflight=%d", c.sync, c.batches, c.inFlight), func(b *testing.B) {
			benchmarkPublish(b, c.sync, publish.WithAtomicBatches(c.batches), publish.WithGroupsInFlight(c.inFlight), publish.WithMinBatch(2))
		})
	}
}

func benchmarkPublish(b *testing.B, sync string, opts ...publish.Option) {
	dir := b.TempDir()
	ns := natstest.RunServerWith(b, publish.EmbeddedConfig{StoreDir: dir, SyncAlways: sync == "server"})
	if sync == "group" {
		s, err := publish.NewStoreSync(b.Context(), dir)
		if err != nil {
			b.Fatal(err)
		}
		opts = append(opts, publish.WithSyncer(s))
	}
	nc, js := natstest.Connect(b, ns)
	if _, err := publish.EnsureStream(b.Context(), js, streamConfig()); err != nil {
		b.Fatal(err)
	}
	p := newPublisher(b, nc, "AYRSHARE", opts...)
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
	b.StopTimer()
	s := p.Stats()
	b.ReportMetric(float64(s.Events)/float64(max(s.Groups, 1)), "events/group")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
