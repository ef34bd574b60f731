package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/internal/powercut"
	"github.com/ayrbridge/ayrbridge/internal/proctest"
	"github.com/ayrbridge/ayrbridge/publish/cenats"
)

// The edge power-cut runs: cuts with the hub away, then cuts while the hub drains the backlog.
const (
	edgeAwayCuts    = 3
	edgeCatchUpCuts = 2
	hubCuts         = 3
)

// TestPowerCutEdge cuts the power under an edge, 32 senders posting to it: its store lives on a
// file system that loses every write no fsync covered (internal/powercut), the edge is
// SIGKILLed and started again on what the disk kept. First three cuts while its link to the hub
// is down, then two while the hub drains the backlog; then the link stays up until the hub has
// everything. Durable (NATS_EMBEDDED_SYNC_ALWAYS=true, the default), every id the edge answered
// 200 is in the hub's stream once, byte for byte. The control runs the same with
// NATS_EMBEDDED_SYNC_ALWAYS=false and must lose acknowledged events: if it loses none, the
// harness stopped biting.
func TestPowerCutEdge(t *testing.T) {
	bin := buildBridge(t)
	if err := powercut.Available(); err != nil {
		t.Skipf("power-cut tests need root and FUSE: %v", err)
	}
	t.Run("durable", func(t *testing.T) {
		r := cutEdge(t, bin, "true")
		if r.lost != 0 || r.dups != 0 || r.corrupt != 0 || r.leaked != 0 {
			t.Errorf("durable: %s", r)
		}
	})
	t.Run("control", func(t *testing.T) {
		r := cutEdge(t, bin, "false")
		if r.lost == 0 {
			t.Errorf("lazy control lost nothing (%s): the power cuts do not bite, the harness is broken", r)
		}
	})
}

// TestPowerCutHub cuts the power under the hub, a nats-server process run from
// deploy/nats/hub.conf itself (only its store and ports moved), while two durable edges forward
// what 32 senders post to them: its store lives on a power-cut file system, the server is
// SIGKILLed and started again from the same conf. Durable (the conf's sync_interval: always),
// every id an edge answered 200 is in the hub's stream once, byte for byte, after the load
// stops. The control runs the conf without that line and must lose acknowledged events at the
// hub: the edges deleted them once the hub had them, so they are gone for good.
func TestPowerCutHub(t *testing.T) {
	bin := buildBridge(t)
	if err := powercut.Available(); err != nil {
		t.Skipf("power-cut tests need root and FUSE: %v", err)
	}
	conf, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nats", "hub.conf"))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("durable", func(t *testing.T) {
		r := cutHub(t, bin, string(conf), false)
		if r.lost != 0 || r.dups != 0 || r.corrupt != 0 || r.leaked != 0 {
			t.Errorf("durable: %s", r)
		}
	})
	t.Run("control", func(t *testing.T) {
		r := cutHub(t, bin, string(conf), true)
		if r.lost == 0 {
			t.Errorf("lazy control lost nothing at the hub (%s): the power cuts do not bite, the harness is broken", r)
		}
	})
}

// cutEdge runs the edge cuts with NATS_EMBEDDED_SYNC_ALWAYS=sync on the edge, and reads the
// hub's stream once the edge's backlog is gone.
func cutEdge(t *testing.T, bin, sync string) edgeCutReport {
	began := time.Now()
	fs := powercut.New(t)
	hub := natstest.RunHub(t)
	e := startEdge(t, bin, hub, "cut", map[string]string{
		"NATS_EMBEDDED_DIR":         filepath.Join(fs.Dir(), "store"),
		"NATS_EMBEDDED_SYNC_ALWAYS": sync,
		"BRIDGE_PUBLISH_TIMEOUT":    "2s",
	})
	e.waitAttached()
	e.cut()
	hubJS := hubStream(t, hub.ClientURL())

	r := edgeCutReport{cutReport: cutReport{cuts: edgeAwayCuts + edgeCatchUpCuts, perCut: make([]int, edgeAwayCuts+edgeCatchUpCuts)}}
	acked := map[string]int{} // id: the cut it was acknowledged before
	attempted := map[string]bool{}
	var backlogs []float64 // the edge's backlog at each cut during the catch-up
	for cut := range r.cuts {
		if cut > 0 {
			e.bridgeProc = startProc(t, bin, e.env)
			t.Logf("edge restarted after cut %d: %s", cut, edgeState(t, e))
		}
		l := startLoad(e.URL, 32, fmt.Sprintf("e%d", cut))
		l.waitAcked(t, 50)
		if cut < edgeAwayCuts {
			time.Sleep(time.Duration(500+rand.IntN(1500)) * time.Millisecond)
		} else {
			if cut == edgeAwayCuts {
				e.restore()
			}
			// The hub is draining the backlog: cut a moment after it took the first events.
			n0, _ := hubCount(hubJS)
			natstest.Eventually(t, converge, func() error {
				if n, err := hubCount(hubJS); err != nil || n <= n0 {
					return fmt.Errorf("the hub has taken nothing since the edge started (%d messages, %v)", n, err)
				}
				return nil
			})
			time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond)
			backlog, err := e.metric("ayrbridge_edge_backlog_messages")
			if err != nil {
				t.Fatalf("cut %d: edge backlog: %v", cut, err)
			}
			backlogs = append(backlogs, backlog)
			t.Logf("edge at cut %d, while the hub drains: %s", cut+1, edgeState(t, e))
		}
		undone, err := fs.Cut(e.Kill)
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		r.undone.Writes += undone.Writes
		r.undone.Bytes += undone.Bytes
		for id := range l.finish() {
			acked[id] = cut
		}
		for id := range l.failed {
			attempted[id] = true
		}
	}
	for _, b := range backlogs {
		if b == 0 {
			t.Errorf("a cut meant to come while the hub drains the backlog came after it drained (backlogs %v)", backlogs)
		}
	}
	e.bridgeProc = startProc(t, bin, e.env)
	up := time.Now()
	state := settle(t, hubJS, len(acked), e)
	settled := time.Since(up)
	total := judgeHub(t, hubJS, acked, attempted, &r, e)
	if err := e.Stop(10 * time.Second); err != nil {
		t.Errorf("edge stop: %v", err)
	}
	t.Logf("NATS_EMBEDDED_SYNC_ALWAYS=%s: %s; cuts 1-%d with the hub away, %d-%d while it drained (edge backlog %v at those); hub holds %d, settled %.1fs after the last restart (%s); %s in all",
		sync, r, edgeAwayCuts, edgeAwayCuts+1, r.cuts, backlogs, total, settled.Seconds(), state, time.Since(began).Round(time.Second))
	return r
}

// cutHub runs the hub cuts on a hub started from conf (deploy/nats/hub.conf), without its
// sync_interval line when lazy, and reads its stream once the edges' backlogs are gone.
func cutHub(t *testing.T, bin, conf string, lazy bool) edgeCutReport {
	began := time.Now()
	fs := powercut.New(t)
	ports := proctest.FreePorts(t, 3)
	url := fmt.Sprintf("nats://127.0.0.1:%d", ports[0])
	path := filepath.Join(t.TempDir(), "hub.conf")
	if err := os.WriteFile(path, []byte(hubConf(t, conf, filepath.Join(fs.Dir(), "hub"), ports, lazy)), 0o644); err != nil {
		t.Fatal(err)
	}
	hub := natstest.StartServerProcessConf(t, path, url)
	hubJS := hubStream(t, url)

	var edges []*edgeNode
	for _, id := range []string{"ha", "hb"} {
		env := map[string]string{
			"NATS_HUB_URL":              fmt.Sprintf("nats-leaf://127.0.0.1:%d", ports[2]),
			"NATS_EDGE_ID":              id,
			"NATS_EMBEDDED_DIR":         t.TempDir(),
			"NATS_EMBEDDED_SYNC_ALWAYS": "true",
			"NATS_HUB_CHECK_INTERVAL":   "2s",
		}
		e := &edgeNode{t: t, bin: bin, id: id, env: env, bridgeProc: startProc(t, bin, env)}
		e.waitAttached()
		edges = append(edges, e)
	}
	var loads []*load
	for _, e := range edges {
		loads = append(loads, startLoad(e.URL, 16, "h"+e.id))
	}

	r := edgeCutReport{cutReport: cutReport{cuts: hubCuts, perCut: make([]int, hubCuts+1)}}
	acked := map[string]int{} // id: the first cut it was acknowledged before, hubCuts after the last
	var resumed []time.Duration
	restarted := time.Now()
	forwarding := func() {
		t.Helper()
		n0, _ := hubCount(hubJS)
		natstest.Eventually(t, converge, func() error {
			if n, err := hubCount(hubJS); err != nil || n < n0+200 {
				return fmt.Errorf("the hub took %d since it started, want 200 (%v)", n-n0, err)
			}
			return nil
		})
		resumed = append(resumed, time.Since(restarted).Round(100*time.Millisecond))
	}
	for cut := range hubCuts {
		forwarding()
		time.Sleep(time.Duration(500+rand.IntN(1500)) * time.Millisecond)
		for _, l := range loads {
			for _, id := range ackedNow(l) {
				if _, ok := acked[id]; !ok {
					acked[id] = cut
				}
			}
		}
		undone, err := fs.Cut(hub.Kill)
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		r.undone.Writes += undone.Writes
		r.undone.Bytes += undone.Bytes
		hub.Start()
		restarted = time.Now()
	}
	forwarding()
	time.Sleep(time.Second)
	attempted := map[string]bool{}
	refused := 0
	for _, l := range loads {
		for id := range l.finish() {
			if _, ok := acked[id]; !ok {
				acked[id] = hubCuts
			}
		}
		for id := range l.failed {
			attempted[id] = true
		}
		refused += len(l.failed)
	}
	up := time.Now()
	state := settle(t, hubJS, len(acked), edges...)
	settled := time.Since(up)
	total := judgeHub(t, hubJS, acked, attempted, &r, edges...)
	mode := "always"
	if lazy {
		mode = "default (lazy)"
	}
	t.Logf("hub sync_interval %s: %s; %d refused by the edges; hub forwarding again %v after each (re)start; hub holds %d, settled %.1fs after the load stopped (%s); %s in all",
		mode, r, refused, resumed, total, settled.Seconds(), state, time.Since(began).Round(time.Second))
	return r
}

// hubConf is deploy/nats/hub.conf with its store on dir and its client, http and leaf ports on
// loopback ports[0], ports[1] and ports[2]; lazy drops its `sync_interval: always` line. Every
// other line is the file's.
func hubConf(t *testing.T, conf, dir string, ports []int, lazy bool) string {
	t.Helper()
	var out []string
	block := ""
	seen := map[string]bool{}
	for _, line := range strings.Split(conf, "\n") {
		trim := strings.TrimSpace(line)
		key, _, _ := strings.Cut(trim, ":")
		set := func(what, repl string) {
			seen[what] = true
			line = repl
		}
		switch {
		case strings.HasSuffix(trim, "{"):
			block = strings.TrimSpace(strings.TrimSuffix(trim, "{"))
		case trim == "}":
			block = ""
		case block == "" && key == "listen":
			set("listen", fmt.Sprintf("listen: 127.0.0.1:%d", ports[0]))
		case block == "" && key == "http":
			set("http", fmt.Sprintf("http: 127.0.0.1:%d", ports[1]))
		case block == "jetstream" && key == "store_dir":
			set("store_dir", fmt.Sprintf("  store_dir: %q", dir))
		case block == "jetstream" && trim == "sync_interval: always":
			seen["sync_interval"] = true
			if lazy {
				continue
			}
		case block == "leafnodes" && key == "listen":
			set("leafnodes listen", fmt.Sprintf("  listen: 127.0.0.1:%d", ports[2]))
		}
		out = append(out, line)
	}
	for _, want := range []string{"listen", "http", "store_dir", "sync_interval", "leafnodes listen"} {
		if !seen[want] {
			t.Fatalf("deploy/nats/hub.conf has no %s line where this test expects one:\n%s", want, conf)
		}
	}
	return strings.Join(out, "\n")
}

// hubStream is a JetStream client of the hub at url that rides out the hub's restarts.
func hubStream(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// hubCount is the number of messages in the hub's stream.
func hubCount(js jetstream.JetStream) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "AYRSHARE")
	if err != nil {
		return 0, err
	}
	return int(s.CachedInfo().State.Msgs), nil
}

// ackedNow is what l has acknowledged so far.
func ackedNow(l *load) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make([]string, 0, len(l.acked))
	for id := range l.acked {
		ids = append(ids, id)
	}
	return ids
}

// settle waits until the edges' backlogs are gone and the hub holds at least want messages;
// when something was lost the hub never gets there, so it is also enough that the backlogs are
// gone and the hub's count held still for 2 s, or that nothing moved at all for 20 s (an edge
// whose backlog does not drain). It is bounded by converge and returns the last state seen.
func settle(t *testing.T, js jetstream.JetStream, want int, edges ...*edgeNode) string {
	t.Helper()
	var last string
	var since time.Time
	natstest.Eventually(t, converge, func() error {
		n, err := hubCount(js)
		if err != nil {
			return err
		}
		backlog := 0.0
		for _, e := range edges {
			b, err := e.metric("ayrbridge_edge_backlog_messages")
			if err != nil {
				return err
			}
			backlog += b
		}
		state := fmt.Sprintf("hub holds %d, %d acknowledged, edge backlog %v", n, want, backlog)
		if state != last {
			last, since = state, time.Now()
		}
		still := time.Since(since)
		switch {
		case backlog == 0 && n >= want, backlog == 0 && still > 2*time.Second, still > 20*time.Second:
			return nil
		}
		return fmt.Errorf("%s, for %s", state, still.Round(time.Second))
	})
	return last
}

// edgeCutReport is a cutReport with what the edges still hold when the hub settled.
type edgeCutReport struct {
	cutReport
	stranded int // acknowledged, not at the hub, still at an edge
	leaked   int // at the hub and still at an edge, so its backlog never drains
}

func (r edgeCutReport) String() string {
	return fmt.Sprintf("%s; left at the edges: %d acknowledged the hub never got, %d the hub has", r.cutReport, r.stranded, r.leaked)
}

// judgeHub reads the hub's stream and the edges' left-overs and counts what the cuts did to
// the acknowledged ids (id: the cut it was acknowledged before): lost (not at the hub), stored
// twice (any id), corrupt (data other than what was sent, an id never sent, a message not
// sourced from an edge). It returns the number of messages at the hub.
func judgeHub(t *testing.T, js jetstream.JetStream, acked map[string]int, attempted map[string]bool, r *edgeCutReport, edges ...*edgeNode) int {
	t.Helper()
	stored := map[string]int{}
	msgs := natstest.Messages(t, js, "AYRSHARE")
	var faults []string
	for _, m := range msgs {
		id := m.Header.Get(cenats.HeaderID)
		stored[id]++
		_, ok := acked[id]
		switch {
		case !ok && !attempted[id]:
			faults = append(faults, id+": never sent")
		case !bytes.Equal(m.Data, loadBody(id)):
			faults = append(faults, fmt.Sprintf("%s: data %q", id, m.Data))
		case !strings.HasPrefix(m.Header.Get("Nats-Stream-Source"), "AYRSHARE_EDGE_"):
			faults = append(faults, fmt.Sprintf("%s: not sourced from an edge (Nats-Stream-Source %q)", id, m.Header.Get("Nats-Stream-Source")))
		}
	}
	r.corrupt = len(faults)
	for _, n := range stored {
		if n > 1 {
			r.dups++
		}
	}
	for id, cut := range acked {
		if stored[id] == 0 {
			r.lost++
			r.perCut[cut]++
		}
	}
	r.acked = len(acked)
	if len(faults) > 0 {
		t.Logf("%d faults at the hub, first: %s", len(faults), strings.Join(faults[:min(5, len(faults))], "; "))
	}
	for _, e := range edges {
		held, desc := edgeHeld(t, e)
		var strandedSeqs, leakedSeqs []uint64
		for id, seq := range held {
			if stored[id] > 0 {
				leakedSeqs = append(leakedSeqs, seq)
			} else if _, ok := acked[id]; ok {
				strandedSeqs = append(strandedSeqs, seq)
			}
		}
		r.stranded += len(strandedSeqs)
		r.leaked += len(leakedSeqs)
		if len(held) > 0 {
			t.Logf("edge %s: %s; of what it holds, acknowledged and not at the hub: %s; at the hub already: %s",
				e.id, desc, seqRanges(strandedSeqs), seqRanges(leakedSeqs))
		}
	}
	return len(msgs)
}

// edgeHeld reads what e's stream still holds (id: stream sequence) and describes its stream
// and hub consumer.
func edgeHeld(t *testing.T, e *edgeNode) (map[string]uint64, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js := streamJS(t, e.NATS)
	name := "AYRSHARE_EDGE_" + e.id
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("edge %s: %v", e.id, err)
	}
	st := s.CachedInfo().State
	held := map[string]uint64{}
	for seq := st.FirstSeq; seq <= st.LastSeq && len(held) < int(st.Msgs); seq++ {
		if m, err := s.GetMsg(ctx, seq); err == nil {
			held[m.Header.Get(cenats.HeaderID)] = seq
		}
	}
	desc := fmt.Sprintf("stream %d messages, seq %d-%d", st.Msgs, st.FirstSeq, st.LastSeq)
	if c, err := js.PushConsumer(ctx, name, "AYRBRIDGE_HUB"); err != nil {
		desc += fmt.Sprintf(", hub consumer: %v", err)
	} else {
		ci := c.CachedInfo()
		desc += fmt.Sprintf(", hub consumer delivered %d, ack floor %d, %d pending", ci.Delivered.Stream, ci.AckFloor.Stream, ci.NumPending)
	}
	return held, desc
}

// seqRanges writes sequences as runs: "3 (1-2, 7)".
func seqRanges(seqs []uint64) string {
	if len(seqs) == 0 {
		return "0"
	}
	slices.Sort(seqs)
	var runs []string
	for i := 0; i < len(seqs); {
		j := i
		for j+1 < len(seqs) && seqs[j+1] == seqs[j]+1 {
			j++
		}
		if i == j {
			runs = append(runs, fmt.Sprint(seqs[i]))
		} else {
			runs = append(runs, fmt.Sprintf("%d-%d", seqs[i], seqs[j]))
		}
		i = j + 1
	}
	if len(runs) > 8 {
		runs = append(runs[:8], "...")
	}
	return fmt.Sprintf("%d (%s)", len(seqs), strings.Join(runs, ", "))
}

// edgeState describes e's stream and hub consumer in one line.
func edgeState(t *testing.T, e *edgeNode) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	js := streamJS(t, e.NATS)
	name := "AYRSHARE_EDGE_" + e.id
	s, err := js.Stream(ctx, name)
	if err != nil {
		return err.Error()
	}
	st := s.CachedInfo().State
	out := fmt.Sprintf("stream %d messages, seq %d-%d", st.Msgs, st.FirstSeq, st.LastSeq)
	c, err := js.PushConsumer(ctx, name, "AYRBRIDGE_HUB")
	if err != nil {
		return out + ", hub consumer: " + err.Error()
	}
	ci := c.CachedInfo()
	return out + fmt.Sprintf(", hub consumer delivered %d, ack floor %d, %d pending, %d awaiting the hub's ack", ci.Delivered.Stream, ci.AckFloor.Stream, ci.NumPending, ci.NumAckPending)
}
