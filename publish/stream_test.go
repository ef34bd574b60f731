package publish_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/publish"
)

func streamConfig() publish.StreamConfig {
	return publish.StreamConfig{Name: "AYRSHARE", Subjects: []string{"ayrshare.>"}, Replicas: 1, DedupWindow: 24 * time.Hour}
}

func TestEnsureStreamCreatesAndUpdates(t *testing.T) {
	ns := natstest.RunServer(t, "")
	_, js := natstest.Connect(t, ns)
	ctx := t.Context()

	s, err := publish.EnsureStream(ctx, js, streamConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if cfg.Storage != jetstream.FileStorage || cfg.Duplicates != 24*time.Hour || !slices.Equal(cfg.Subjects, []string{"ayrshare.>"}) ||
		cfg.Retention != jetstream.LimitsPolicy || cfg.MaxAge != 0 || !cfg.AllowAtomicPublish {
		t.Fatalf("created %+v", cfg)
	}
	// A stream an earlier bridge created gets atomic batches.
	cfg.AllowAtomicPublish = false
	if err := js.DeleteStream(ctx, cfg.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if s, err = publish.EnsureStream(ctx, js, streamConfig()); err != nil || !s.CachedInfo().Config.AllowAtomicPublish {
		t.Fatalf("an earlier bridge's stream not given allow_atomic: %v", err)
	}
	cfg = s.CachedInfo().Config

	// An operator's own settings survive; the bridge's are brought up to date.
	cfg.MaxBytes = 1 << 30
	cfg.Subjects = append(cfg.Subjects, "other.>")
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	want := streamConfig()
	want.DedupWindow = time.Hour
	want.MaxAge = 30 * 24 * time.Hour
	s, err = publish.EnsureStream(ctx, js, want)
	if err != nil {
		t.Fatal(err)
	}
	got := s.CachedInfo().Config
	if got.Duplicates != time.Hour || got.MaxAge != 30*24*time.Hour || got.MaxBytes != 1<<30 || !slices.Contains(got.Subjects, "other.>") {
		t.Fatalf("updated %+v", got)
	}
}

func TestEnsureStreamRefusesIncompatible(t *testing.T) {
	tests := map[string]jetstream.StreamConfig{
		"memory storage": {Name: "AYRSHARE", Subjects: []string{"ayrshare.>"}, Storage: jetstream.MemoryStorage},
		"work queue":     {Name: "AYRSHARE", Subjects: []string{"ayrshare.>"}, Retention: jetstream.WorkQueuePolicy},
		"sealed":         {Name: "AYRSHARE", Subjects: []string{"ayrshare.>"}},
	}
	for name, existing := range tests {
		t.Run(name, func(t *testing.T) {
			ns := natstest.RunServer(t, "")
			_, js := natstest.Connect(t, ns)
			if _, err := js.CreateStream(t.Context(), existing); err != nil {
				t.Fatal(err)
			}
			if name == "sealed" {
				s, _ := js.Stream(t.Context(), "AYRSHARE")
				c := s.CachedInfo().Config
				c.Sealed = true
				if _, err := js.UpdateStream(t.Context(), c); err != nil {
					t.Fatal(err)
				}
			}
			_, err := publish.EnsureStream(t.Context(), js, streamConfig())
			if !errors.Is(err, publish.ErrStreamIncompatible) {
				t.Fatalf("EnsureStream = %v, want ErrStreamIncompatible", err)
			}
		})
	}
}

// TestEnsureStreamEdge creates an edge's store: work-queue retention and a budget that refuses
// new messages instead of discarding old ones, which may not have reached the hub.
func TestEnsureStreamEdge(t *testing.T) {
	ns := natstest.RunServer(t, "")
	_, js := natstest.Connect(t, ns)
	edge := streamConfig()
	edge.Name, edge.WorkQueue, edge.MaxBytes = "AYRSHARE_EDGE_eu-1", true, 1<<20
	s, err := publish.EnsureStream(t.Context(), js, edge)
	if err != nil {
		t.Fatal(err)
	}
	got := s.CachedInfo().Config
	if got.Retention != jetstream.WorkQueuePolicy || got.MaxBytes != 1<<20 || got.Discard != jetstream.DiscardNew ||
		got.Duplicates != 24*time.Hour || got.MaxAge != 0 {
		t.Fatalf("created %+v", got)
	}
	edge.MaxBytes = 2 << 20
	if s, err = publish.EnsureStream(t.Context(), js, edge); err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.MaxBytes; got != 2<<20 {
		t.Fatalf("budget after update = %d, want %d", got, 2<<20)
	}
	// A plain stream where the edge's store should be is not converted.
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "AYRSHARE_EDGE_eu-2", Subjects: []string{"other.>"}}); err != nil {
		t.Fatal(err)
	}
	edge.Name, edge.Subjects = "AYRSHARE_EDGE_eu-2", []string{"other.>"}
	if _, err := publish.EnsureStream(t.Context(), js, edge); !errors.Is(err, publish.ErrStreamIncompatible) {
		t.Fatalf("EnsureStream on a limits stream = %v, want ErrStreamIncompatible", err)
	}
}

func TestStreamConfigValidate(t *testing.T) {
	bad := map[string]func(*publish.StreamConfig){
		"no name":           func(c *publish.StreamConfig) { c.Name = "" },
		"no subjects":       func(c *publish.StreamConfig) { c.Subjects = nil },
		"zero replicas":     func(c *publish.StreamConfig) { c.Replicas = 0 },
		"six replicas":      func(c *publish.StreamConfig) { c.Replicas = 6 },
		"no dedup window":   func(c *publish.StreamConfig) { c.DedupWindow = 0 },
		"negative max age":  func(c *publish.StreamConfig) { c.MaxAge = -time.Second },
		"window beyond age": func(c *publish.StreamConfig) { c.MaxAge = time.Hour },
		"negative budget":   func(c *publish.StreamConfig) { c.MaxBytes = -1 },
		"edge that expires": func(c *publish.StreamConfig) { c.WorkQueue, c.MaxAge = true, 48*time.Hour },
	}
	if err := streamConfig().Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	for name, mutate := range bad {
		c := streamConfig()
		mutate(&c)
		if c.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
