package publish_test

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/publish"
)

// runEdge starts an edge server with id that dials leafAddr, its leaf link denying deny, and
// the edge's stream with the given budget.
func runEdge(t *testing.T, id, leafAddr string, deny []string, budget int64) (*server.Server, *nats.Conn, publish.StreamConfig) {
	t.Helper()
	ns, err := publish.StartEmbedded(publish.EmbeddedConfig{
		Listen: "127.0.0.1:0", StoreDir: t.TempDir(),
		Name: publish.EdgeDomain(id), Domain: publish.EdgeDomain(id), MaxStore: budget + 64<<20,
		Hub: &publish.HubLink{URLs: []*url.URL{{Scheme: "nats-leaf", Host: leafAddr}}, Deny: deny, Redial: 250 * time.Millisecond},
	}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	nc, js := natstest.Connect(t, ns)
	sc := streamConfig()
	sc.Name, sc.WorkQueue, sc.MaxBytes = "AYRSHARE_EDGE_"+id, true, budget
	if _, err := publish.EnsureStream(t.Context(), js, sc); err != nil {
		t.Fatal(err)
	}
	return ns, nc, sc
}

func newEdge(t *testing.T, ns *server.Server, nc *nats.Conn, sc publish.StreamConfig, attach bool) *publish.Edge {
	t.Helper()
	e, err := publish.NewEdge(nc, ns, publish.EdgeConfig{
		Stream: sc.Name, Domain: ns.Name(), HubDomain: "hub", Hub: streamConfig(), Budget: sc.MaxBytes,
		Attach: attach, Every: time.Second,
	}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func waitLinked(t *testing.T, ns *server.Server) {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, func() error {
		if ns.NumLeafNodes() != 1 {
			return errors.New("leaf link not up")
		}
		return nil
	})
}

func hubSources(t *testing.T, js jetstream.JetStream) (names []string, window time.Duration) {
	t.Helper()
	s, err := js.Stream(t.Context(), "AYRSHARE")
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	for _, src := range cfg.Sources {
		names = append(names, src.Name)
	}
	slices.Sort(names)
	return names, cfg.Duplicates
}

// TestEdgeCheckAttaches has two edges attach themselves to one hub stream: the first creates it,
// the second adds itself beside the first, an edge whose source another writer removed adds it
// again, a window that went missing is put back, and an edge told not to attach changes nothing.
func TestEdgeCheckAttaches(t *testing.T) {
	hub := natstest.RunHub(t)
	hubNC, _ := natstest.Connect(t, hub.Server())
	hubJS, err := jetstream.NewWithDomain(hubNC, "hub")
	if err != nil {
		t.Fatal(err)
	}
	deny := []string{"ayrshare.>"}
	var edges []*publish.Edge
	var conns []*nats.Conn
	for _, id := range []string{"a", "b"} {
		ns, nc, sc := runEdge(t, id, hub.LeafAddr(), deny, 1<<20)
		waitLinked(t, ns)
		edges, conns = append(edges, newEdge(t, ns, nc, sc, true)), append(conns, nc)
	}
	check := func(e *publish.Edge, wantChanged bool) {
		t.Helper()
		changed, err := e.Check(t.Context())
		if err != nil || changed != wantChanged {
			t.Fatalf("Check = %v, %v; want changed %v", changed, err, wantChanged)
		}
	}
	check(edges[0], true)
	check(edges[0], false)
	check(edges[1], true)
	if names, window := hubSources(t, hubJS); !slices.Equal(names, []string{"AYRSHARE_EDGE_a", "AYRSHARE_EDGE_b"}) || window != 24*time.Hour {
		t.Fatalf("hub sources %v, window %s", names, window)
	}

	// Another writer's stale read-modify-write drops b and the window.
	s, _ := hubJS.Stream(t.Context(), "AYRSHARE")
	cfg := s.CachedInfo().Config
	cfg.Sources, cfg.Duplicates = cfg.Sources[:1], 0
	if _, err := hubJS.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	if _, window := hubSources(t, hubJS); window != 0 {
		t.Fatalf("setup: hub window %s, want 0 (a stream with sources gets none unless set)", window)
	}
	check(edges[1], true)
	if names, window := hubSources(t, hubJS); !slices.Equal(names, []string{"AYRSHARE_EDGE_a", "AYRSHARE_EDGE_b"}) || window != 24*time.Hour {
		t.Fatalf("after re-check: hub sources %v, window %s", names, window)
	}

	// An edge that may not attach reports what is wrong and the command, and leaves the hub alone.
	s, _ = hubJS.Stream(t.Context(), "AYRSHARE")
	cfg = s.CachedInfo().Config
	cfg.Duplicates = 0
	if _, err := hubJS.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	ns, nc, sc := runEdge(t, "c", hub.LeafAddr(), deny, 1<<20)
	waitLinked(t, ns)
	c := newEdge(t, ns, nc, sc, false)
	_, err = c.Check(t.Context())
	for _, want := range []string{"does not source AYRSHARE_EDGE_c", "no duplicate window", "stream edit AYRSHARE"} {
		if !errors.Is(err, publish.ErrNotAttached) || !strings.Contains(err.Error(), want) {
			t.Fatalf("Check without attach = %v, want ErrNotAttached saying %q", err, want)
		}
	}
	if names, window := hubSources(t, hubJS); len(names) != 2 || window != 0 {
		t.Fatalf("hub sources %v, window %s after a check that may not attach", names, window)
	}
	check(edges[0], true)

	// What each edge stores reaches the hub once, marked with its source.
	for i, nc := range conns {
		js, _ := jetstream.New(nc)
		for n := range 5 {
			msg := nats.NewMsg(fmt.Sprintf("ayrshare.feed.e%d", i))
			msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("e%d-%d", i, n))
			if _, err := js.PublishMsg(t.Context(), msg); err != nil {
				t.Fatal(err)
			}
		}
	}
	natstest.Eventually(t, 30*time.Second, func() error {
		if n := len(natstest.Messages(t, hubJS, "AYRSHARE")); n != 10 {
			return fmt.Errorf("hub holds %d of 10", n)
		}
		return nil
	})
	for _, m := range natstest.Messages(t, hubJS, "AYRSHARE") {
		if !strings.HasPrefix(m.Header.Get("Nats-Stream-Source"), "AYRSHARE_EDGE_") {
			t.Fatalf("hub message %s without an edge's Nats-Stream-Source: %v", m.Header.Get(jetstream.MsgIDHeader), m.Header)
		}
	}
}

// TestEdgeLeafDenyPreventsDoubleCapture guards the deny on the leaf remote: without it the hub
// stream's interest in ayrshare.> crosses the link and every edge publish is stored twice, once
// directly and once sourced. The messages carry no Nats-Msg-Id, because the hub's window would
// hide the second copy; the bridge's ids do not make the link safe, as the direct copy's PubAck
// (or its "wrong stream" error) may be the one the publisher gets first.
func TestEdgeLeafDenyPreventsDoubleCapture(t *testing.T) {
	for _, tc := range []struct {
		name string
		deny []string
		want int
	}{
		{"without deny", nil, 40},
		{"with deny", []string{"ayrshare.>"}, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := natstest.RunHub(t)
			hubNC, _ := natstest.Connect(t, hub.Server())
			hubJS, _ := jetstream.NewWithDomain(hubNC, "hub")
			ns, nc, sc := runEdge(t, "x", hub.LeafAddr(), tc.deny, 1<<20)
			waitLinked(t, ns)
			if _, err := newEdge(t, ns, nc, sc, true).Check(t.Context()); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond) // interest propagation over the leaf
			js, _ := jetstream.New(nc)
			for n := range 20 {
				if _, err := js.Publish(t.Context(), "ayrshare.feed.none", fmt.Appendf(nil, "x-%d", n)); err != nil {
					t.Fatal(err)
				}
			}
			natstest.Eventually(t, 30*time.Second, func() error {
				if n := len(natstest.Messages(t, hubJS, "AYRSHARE")); n < tc.want {
					return fmt.Errorf("hub holds %d, want %d", n, tc.want)
				}
				return nil
			})
			time.Sleep(time.Second) // anything extra would have arrived by now
			if n := len(natstest.Messages(t, hubJS, "AYRSHARE")); n != tc.want {
				t.Fatalf("hub holds %d messages for 20 publishes, want %d", n, tc.want)
			}
		})
	}
}

// TestEdgeFullRefusesNew fills an edge whose hub is away: the first refusal is ErrStreamFull
// (an ErrUnavailable), and nothing acknowledged before it was dropped to make room.
func TestEdgeFullRefusesNew(t *testing.T) {
	_, nc, sc := runEdge(t, "full", "127.0.0.1:1", []string{"ayrshare.>"}, 1<<20)
	p := newPublisher(t, nc, sc.Name)
	pad := strings.Repeat("x", 10<<10)
	acked := 0
	var err error
	for i := range 1000 {
		if _, _, err = p.Publish(t.Context(), event(t, fmt.Sprintf(`{"action":"feed","hookId":"f%d","pad":%q}`, i, pad))); err != nil {
			break
		}
		acked++
	}
	if !errors.Is(err, publish.ErrStreamFull) || !errors.Is(err, publish.ErrUnavailable) {
		t.Fatalf("after %d stored: %v, want ErrStreamFull and ErrUnavailable", acked, err)
	}
	if n := streamMsgs(t, mustJS(t, nc), sc.Name); n != uint64(acked) || acked < 50 {
		t.Fatalf("edge holds %d messages, %d acknowledged", n, acked)
	}
}

func mustJS(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
