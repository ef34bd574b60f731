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

// edgeServer is an in-process edge: its server, a client connection and the edge stream.
type edgeServer struct {
	ns     *server.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	stream publish.StreamConfig
}

// runEdge starts an edge server with id that dials leafAddr, its leaf link denying deny, and
// the edge's stream with the given budget.
func runEdge(t *testing.T, id, leafAddr string, deny []string, budget int64) edgeServer {
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
	return edgeServer{ns: ns, nc: nc, js: js, stream: sc}
}

func (es edgeServer) newEdge(t *testing.T, attach bool) *publish.Edge {
	t.Helper()
	e, err := publish.NewEdge(es.nc, es.ns, publish.EdgeConfig{
		Stream: es.stream.Name, Domain: es.ns.Name(), HubDomain: "hub", Hub: streamConfig(), Budget: es.stream.MaxBytes,
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
		// The edge's own consumer, so that the hub resumes on its heartbeats after an outage.
		if c := src.Consumer; c == nil || c.Name != "AYRBRIDGE_HUB" || c.DeliverSubject != "ayrbridge.ayr-edge-"+strings.TrimPrefix(src.Name, "AYRSHARE_EDGE_")+".hub" {
			t.Fatalf("hub source %s names consumer %+v, want the edge's AYRBRIDGE_HUB", src.Name, c)
		}
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
	var servers []edgeServer
	for _, id := range []string{"a", "b"} {
		es := runEdge(t, id, hub.LeafAddr(), deny, 1<<20)
		waitLinked(t, es.ns)
		edges, servers = append(edges, es.newEdge(t, true)), append(servers, es)
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
	es := runEdge(t, "c", hub.LeafAddr(), deny, 1<<20)
	waitLinked(t, es.ns)
	c := es.newEdge(t, false)
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
	for i, es := range servers {
		for n := range 5 {
			msg := nats.NewMsg(fmt.Sprintf("ayrshare.feed.e%d", i))
			msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("e%d-%d", i, n))
			if _, err := es.js.PublishMsg(t.Context(), msg); err != nil {
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
			es := runEdge(t, "x", hub.LeafAddr(), tc.deny, 1<<20)
			waitLinked(t, es.ns)
			if _, err := es.newEdge(t, true).Check(t.Context()); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond) // interest propagation over the leaf
			for n := range 20 {
				if _, err := es.js.Publish(t.Context(), "ayrshare.feed.none", fmt.Appendf(nil, "x-%d", n)); err != nil {
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
	es := runEdge(t, "full", "127.0.0.1:1", []string{"ayrshare.>"}, 1<<20)
	p := newPublisher(t, es.nc, es.stream.Name)
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
	if n := streamMsgs(t, es.js, es.stream.Name); n != uint64(acked) || acked < 50 {
		t.Fatalf("edge holds %d messages, %d acknowledged", n, acked)
	}
}
