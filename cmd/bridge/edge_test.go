package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ayrbridge/ayrbridge/internal/metricstest"
	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/publish/cenats"
)

// converge is how long the hub may take to hold everything after the link returns: a hub that
// restarted during the outage waits out a 30 s consumer-create timeout first.
const converge = 120 * time.Second

// edgeNode is an edge bridge process with the proxy its leaf link goes through.
type edgeNode struct {
	t     *testing.T
	bin   string
	id    string
	env   map[string]string
	proxy *natstest.Proxy
	*bridgeProc
}

// startEdge runs an edge bridge with id on its own store, dialling hub through a proxy.
func startEdge(t *testing.T, bin string, hub *natstest.Hub, id string, extra map[string]string) *edgeNode {
	t.Helper()
	proxy := natstest.NewProxy(t, hub.LeafAddr())
	env := map[string]string{
		"NATS_HUB_URL":            "nats-leaf://" + proxy.Addr(),
		"NATS_EDGE_ID":            id,
		"NATS_EMBEDDED_DIR":       t.TempDir(),
		"NATS_HUB_CHECK_INTERVAL": "2s",
	}
	for k, v := range extra {
		env[k] = v
	}
	e := &edgeNode{t: t, bin: bin, id: id, env: env, proxy: proxy}
	e.bridgeProc = startProc(t, bin, env)
	return e
}

// restart SIGKILLs the edge and starts it again on the same store.
func (e *edgeNode) restart() {
	e.t.Helper()
	if err := e.Signal(syscall.SIGKILL); err != nil {
		e.t.Fatal(err)
	}
	<-e.Done()
	e.bridgeProc = startProc(e.t, e.bin, e.env)
}

// metric reads one unlabelled gauge or counter from the edge's /metrics.
func (e *edgeNode) metric(name string) (float64, error) { return scrapeMetric(e.URL, name) }

// scrapeMetric reads one unlabelled gauge or counter from the /metrics of the bridge at url.
func scrapeMetric(url, name string) (float64, error) {
	samples, err := metricstest.Scrape(context.Background(), url+"/metrics")
	if err != nil {
		return 0, err
	}
	v, ok := samples[name]
	if !ok {
		return 0, fmt.Errorf("%s not exported", name)
	}
	return v, nil
}

// waitMetric waits until the edge reports name == want.
func (e *edgeNode) waitMetric(name string, want float64, wait time.Duration) {
	e.t.Helper()
	natstest.Eventually(e.t, wait, func() error {
		v, err := e.metric(name)
		if err != nil {
			return err
		}
		if v != want {
			return fmt.Errorf("%s = %v, want %v", name, v, want)
		}
		return nil
	})
}

// sender posts webhooks and remembers what it sent and what the edges acknowledged.
type sender struct {
	t      *testing.T
	bodies map[string][]byte   // every id sent, with its body
	acked  map[string][]string // per edge id: the ids it acknowledged, in its stream's order
	seqs   map[string]uint64   // per edge id: the last sequence it answered
	sent   int
}

func newSender(t *testing.T) *sender {
	return &sender{t: t, bodies: map[string][]byte{}, acked: map[string][]string{}, seqs: map[string]uint64{}}
}

func webhookBody(id string) []byte {
	return fmt.Appendf(nil, `{"action":"scheduled","status":"success","hookId":%q,"postIds":[{"platform":"x","id":%q}]}`, id, id)
}

// post sends the webhook id to e and returns the answer; a 2xx is recorded as acknowledged.
func (s *sender) post(e *edgeNode, id string) answer {
	s.t.Helper()
	body := webhookBody(id)
	s.bodies[id] = body
	s.sent++
	a, err := tryPost(e.URL+"/webhook", body, nil)
	if err != nil {
		s.t.Fatalf("post %s to edge %s: %v", id, e.id, err)
	}
	if a.Status == http.StatusOK && !a.Duplicate {
		if a.Seq <= s.seqs[e.id] {
			s.t.Fatalf("edge %s answered seq %d after %d", e.id, a.Seq, s.seqs[e.id])
		}
		s.seqs[e.id] = a.Seq
		s.acked[e.id] = append(s.acked[e.id], id)
	}
	return a
}

// postN posts n new webhooks to e, each of which must be acknowledged.
func (s *sender) postN(e *edgeNode, prefix string, n int) {
	s.t.Helper()
	for i := range n {
		id := fmt.Sprintf("%s-%s-%d", e.id, prefix, i)
		if a := s.post(e, id); a.Status != http.StatusOK || a.Duplicate {
			s.t.Fatalf("%s: status %d duplicate %v (%s), want 200", id, a.Status, a.Duplicate, a.Error)
		}
	}
}

func (s *sender) ackedTotal() int {
	n := 0
	for _, ids := range s.acked {
		n += len(ids)
	}
	return n
}

// hubView is what the hub stream holds, read message by message.
type hubView struct {
	count  map[string]int      // per id
	order  map[string][]string // per source: ids in hub order
	total  int
	faults []string
}

func readHub(t *testing.T, js jetstream.JetStream, bodies map[string][]byte) hubView {
	t.Helper()
	v := hubView{count: map[string]int{}, order: map[string][]string{}}
	last := map[string]uint64{}
	for _, m := range natstest.Messages(t, js, "AYRSHARE") {
		v.total++
		id := m.Header.Get(cenats.HeaderID)
		v.count[id]++
		// "<source identity> <source seq> ...", written by the hub on every sourced message.
		src := strings.Fields(m.Header.Get("Nats-Stream-Source"))
		if len(src) < 2 || !strings.HasPrefix(src[0], "AYRSHARE_EDGE_") {
			v.faults = append(v.faults, fmt.Sprintf("%s: not sourced from an edge (Nats-Stream-Source %q)", id, m.Header.Get("Nats-Stream-Source")))
			continue
		}
		seq, _ := strconv.ParseUint(src[1], 10, 64)
		if seq <= last[src[0]] {
			v.faults = append(v.faults, fmt.Sprintf("%s: source %s sequence %d after %d", id, src[0], seq, last[src[0]]))
		}
		last[src[0]] = seq
		edge := strings.TrimPrefix(strings.SplitN(src[0], ":", 2)[0], "AYRSHARE_EDGE_")
		v.order[edge] = append(v.order[edge], id)
		if want, ok := bodies[id]; !ok {
			v.faults = append(v.faults, fmt.Sprintf("%s: never sent", id))
		} else if !bytes.Equal(m.Data, want) {
			v.faults = append(v.faults, fmt.Sprintf("%s: data %q, sent %q", id, m.Data, want))
		}
	}
	return v
}

// requireConverged waits until the hub holds every acknowledged id, then checks the proof of
// edge-notes: each once, nothing never sent, all sourced from an edge with rising sequences,
// byte for byte, in each edge's order; and each edge's backlog is 0. It returns the wait.
func requireConverged(t *testing.T, hub *natstest.Hub, s *sender, edges ...*edgeNode) time.Duration {
	t.Helper()
	_, js0 := natstest.Connect(t, hub.Server())
	js, _ := jetstream.NewWithDomain(js0.Conn(), "hub")
	start := time.Now()
	var v hubView
	natstest.Eventually(t, converge, func() error {
		v = readHub(t, js, s.bodies)
		for _, ids := range s.acked {
			for _, id := range ids {
				if v.count[id] == 0 {
					return fmt.Errorf("hub holds %d messages, %d acknowledged; %s missing", v.total, s.ackedTotal(), id)
				}
			}
		}
		return nil
	})
	took := time.Since(start)
	time.Sleep(500 * time.Millisecond) // a copy in flight would land now
	v = readHub(t, js, s.bodies)
	dups := 0
	for id, n := range v.count {
		if n > 1 {
			dups++
			v.faults = append(v.faults, fmt.Sprintf("%s stored %d times", id, n))
		}
	}
	for edge, ids := range s.acked {
		if got := v.order[edge]; !slices.Equal(got, ids) {
			v.faults = append(v.faults, fmt.Sprintf("edge %s: hub order differs from the edge's (%d vs %d ids)", edge, len(got), len(ids)))
		}
	}
	for _, e := range edges {
		e.waitMetric("ayrbridge_edge_backlog_messages", 0, 30*time.Second)
	}
	t.Logf("sent %d, acknowledged %d, at the hub %d (%d distinct), lost 0, duplicated %d, converged %.1fs after the check began",
		s.sent, s.ackedTotal(), v.total, len(v.count), dups, took.Seconds())
	if len(v.faults) > 0 {
		t.Fatalf("%d faults, first: %s", len(v.faults), strings.Join(v.faults[:min(5, len(v.faults))], "; "))
	}
	return took
}

// attachedEdge starts a hub and one edge of it, waits until the edge is attached, and returns
// them with a sender.
func attachedEdge(t *testing.T, bin, id string, extra map[string]string) (*natstest.Hub, *sender, *edgeNode) {
	t.Helper()
	hub := natstest.RunHub(t)
	e := startEdge(t, bin, hub, id, extra)
	e.waitAttached()
	return hub, newSender(t), e
}

// waitAttached waits until the hub stream lists the edge and the hub's sourcing consumer exists
// at the edge, as on an edge that has run for a while.
func (e *edgeNode) waitAttached() {
	e.t.Helper()
	e.waitMetric("ayrbridge_edge_hub_attached", 1, 20*time.Second)
	e.waitMetric("ayrbridge_edge_sourcing_consumers", 1, 20*time.Second)
}

// cut breaks e's link and waits until the edge sees it.
func (e *edgeNode) cut() {
	e.t.Helper()
	e.proxy.Cut()
	e.waitMetric("ayrbridge_edge_hub_connected", 0, 10*time.Second)
}

func (e *edgeNode) restore() {
	e.t.Helper()
	e.proxy.Restore()
	e.waitMetric("ayrbridge_edge_hub_connected", 1, 20*time.Second)
}

// TestEdgeStoreAndForward walks one edge through the short scenario of edge-notes: link up, link
// cut with a growing backlog and 2xx for every webhook, the edge SIGKILLed during the outage and
// restarted on its store (resends answered as duplicates), then the link back and the hub
// holding every acknowledged event once, byte for byte, in the edge's order.
func TestEdgeStoreAndForward(t *testing.T) {
	bin := buildBridge(t)
	hub, s, e := attachedEdge(t, bin, "t1", nil)

	s.postN(e, "up", 200)
	requireConverged(t, hub, s, e)

	e.cut()
	s.postN(e, "cut", 400)
	e.waitMetric("ayrbridge_edge_backlog_messages", 400, 10*time.Second)
	if code, err := tryGet(e.URL + "/readyz"); err != nil || code != http.StatusOK {
		t.Fatalf("readyz during the outage: %d, %v", code, err)
	}
	if age, err := e.metric("ayrbridge_edge_oldest_backlog_age_seconds"); err != nil || age <= 0 {
		t.Fatalf("oldest backlog age %v, %v; want > 0", age, err)
	}

	e.restart()
	e.waitMetric("ayrbridge_edge_backlog_messages", 400, 10*time.Second)
	last := s.acked[e.id][len(s.acked[e.id])-50:]
	for _, id := range last {
		if a := s.post(e, id); a.Status != http.StatusOK || !a.Duplicate {
			t.Fatalf("resend of %s after the restart: status %d duplicate %v, want a 200 duplicate", id, a.Status, a.Duplicate)
		}
	}
	s.postN(e, "after-kill", 100)

	start := time.Now()
	e.restore()
	requireConverged(t, hub, s, e)
	t.Logf("link cut: %d acknowledged during the outage, drained %.1fs after link-up", 500, time.Since(start).Seconds())
	// Every event the edge stored was removed there once the hub had it; the resends stored nothing.
	e.waitMetric("ayrbridge_edge_forwarded_messages_total", float64(s.ackedTotal()), 10*time.Second)
	e.waitMetric("ayrbridge_edge_budget_bytes", 1<<30, time.Second)
}

// TestEdgeFull fills a small edge while its link is down: the first refusal is a 503 with
// Retry-After, nothing acknowledged before it is lost once the link returns, and the edge
// accepts again once its backlog drained.
func TestEdgeFull(t *testing.T) {
	bin := buildBridge(t)
	hub, s, e := attachedEdge(t, bin, "small", map[string]string{"NATS_EDGE_MAX_BYTES": strconv.Itoa(1 << 20)})
	e.cut()
	pad := strings.Repeat("p", 8<<10)
	var refusal *http.Response
	var refusalBody []byte
	for i := 0; refusal == nil && i < 1000; i++ {
		id := fmt.Sprintf("full-%d", i)
		body := fmt.Appendf(nil, `{"action":"feed","hookId":%q,"pad":%q}`, id, pad)
		s.bodies[id] = body
		s.sent++
		res, err := client.Post(e.URL+"/webhook", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			s.acked[e.id] = append(s.acked[e.id], id)
		} else {
			refusal, refusalBody = res, b
		}
	}
	if refusal == nil || refusal.StatusCode != http.StatusServiceUnavailable || refusal.Header.Get("Retry-After") == "" ||
		!bytes.Contains(refusalBody, []byte(`"error"`)) {
		t.Fatalf("first refusal after %d stored: %+v %s, want a JSON 503 with Retry-After", s.ackedTotal(), refusal, refusalBody)
	}
	t.Logf("full edge: first refusal (503, Retry-After %s) after %d events of 8 KiB in a 1 MiB budget", refusal.Header.Get("Retry-After"), s.ackedTotal())
	e.restore()
	requireConverged(t, hub, s, e)
	s.postN(e, "drained", 10)
	requireConverged(t, hub, s, e)
}

// TestEdgeSameWebhookTwoEdges sends one webhook through two edges (a provider retry that a load
// balancer sent elsewhere): the hub's window stores it once.
func TestEdgeSameWebhookTwoEdges(t *testing.T) {
	bin := buildBridge(t)
	hub := natstest.RunHub(t)
	s := newSender(t)
	a := startEdge(t, bin, hub, "a", nil)
	b := startEdge(t, bin, hub, "b", nil)
	for _, e := range []*edgeNode{a, b} {
		e.waitAttached()
	}
	s.postN(a, "own", 20)
	s.postN(b, "own", 20)
	for i := range 10 {
		id := fmt.Sprintf("shared-%d", i)
		for _, e := range []*edgeNode{a, b} {
			if ans := s.post(e, id); ans.Status != http.StatusOK {
				t.Fatalf("%s to %s: %d", id, e.id, ans.Status)
			}
		}
	}
	// The hub keeps the first copy of a shared id, from whichever edge it sourced first, so
	// each edge's order is checked on its own ids and the shared ones are counted.
	shared := map[string][]string{}
	for edge, ids := range s.acked {
		shared[edge] = slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return !strings.HasPrefix(id, "shared-") })
		s.acked[edge] = slices.DeleteFunc(ids, func(id string) bool { return strings.HasPrefix(id, "shared-") })
	}
	_, js0 := natstest.Connect(t, hub.Server())
	js, _ := jetstream.NewWithDomain(js0.Conn(), "hub")
	natstest.Eventually(t, converge, func() error {
		v := readHub(t, js, s.bodies)
		if v.total != 50 {
			return fmt.Errorf("hub holds %d messages, want 20+20+10", v.total)
		}
		return nil
	})
	time.Sleep(time.Second)
	v := readHub(t, js, s.bodies)
	for i := range 10 {
		if n := v.count[fmt.Sprintf("shared-%d", i)]; n != 1 {
			t.Fatalf("shared-%d stored %d times at the hub", i, n)
		}
	}
	if v.total != 50 || len(v.faults) > 0 {
		t.Fatalf("hub holds %d, faults %v", v.total, v.faults)
	}
	t.Logf("two edges: 20+20 own and 10 shared webhooks sent to both; hub holds %d, each once", v.total)
}

// TestEdgeHubRestarted kills the hub during an outage and starts it again on its store: the
// edge answers 200 throughout, and the hub, its state intact, catches up.
func TestEdgeHubRestarted(t *testing.T) { hubRestarted(t, buildBridge(t), 300) }

// TestEdgeKilledDuringCatchUp SIGKILLs the edge just after its link returned, while the hub
// sources its backlog, and starts it again on its store.
func TestEdgeKilledDuringCatchUp(t *testing.T) { killedDuringCatchUp(t, buildBridge(t), 300) }

func hubRestarted(t *testing.T, bin string, n int) {
	hub, s, e := attachedEdge(t, bin, "hubkill", nil)
	s.postN(e, "before", 100)
	requireConverged(t, hub, s, e)
	hub.Stop()
	e.waitMetric("ayrbridge_edge_hub_connected", 0, 10*time.Second)
	s.postN(e, "down", n)
	e.waitMetric("ayrbridge_edge_backlog_messages", float64(n), 10*time.Second)
	hub.Start()
	up := time.Now()
	e.waitMetric("ayrbridge_edge_hub_connected", 1, 30*time.Second)
	requireConverged(t, hub, s, e)
	t.Logf("hub restarted: %d acknowledged while it was down, drained %.1fs after it came back", n, time.Since(up).Seconds())
}

func killedDuringCatchUp(t *testing.T, bin string, n int) {
	hub, s, e := attachedEdge(t, bin, "midkill", nil)
	e.cut()
	s.postN(e, "cut", n)
	e.restore()
	time.Sleep(50 * time.Millisecond) // the hub is sourcing now
	e.restart()
	up := time.Now()
	s.postN(e, "after", 100)
	requireConverged(t, hub, s, e)
	t.Logf("edge killed during catch-up: drained %.1fs after its restart", time.Since(up).Seconds())
}

// TestEdgeMatrix is the long run of edge-notes' test plan, about two minutes: the hub restart
// and the edge kill with 1,000 events each, and one long-lived edge whose link flaps for 3, 15
// and 45 seconds. Run it with
//
//	AYRBRIDGE_EDGE_MATRIX=1 go test ./cmd/bridge -run TestEdgeMatrix -v -timeout 20m
func TestEdgeMatrix(t *testing.T) {
	if os.Getenv("AYRBRIDGE_EDGE_MATRIX") == "" {
		t.Skip("the long edge matrix runs with AYRBRIDGE_EDGE_MATRIX=1 (see the test's comment)")
	}
	bin := buildBridge(t)
	t.Run("hub restarted during the outage", func(t *testing.T) { hubRestarted(t, bin, 1000) })
	t.Run("edge killed while the hub catches up", func(t *testing.T) { killedDuringCatchUp(t, bin, 1000) })
	t.Run("link flaps", func(t *testing.T) {
		hub, s, e := attachedEdge(t, bin, "flappy", nil)
		for _, outage := range []time.Duration{3 * time.Second, 15 * time.Second, 45 * time.Second} {
			e.cut()
			end := time.Now().Add(outage)
			for i := 0; time.Now().Before(end); i++ {
				s.postN(e, fmt.Sprintf("flap%s-%d", outage, i), 10)
				time.Sleep(100 * time.Millisecond)
			}
			e.proxy.Restore()
			up := time.Now()
			e.waitMetric("ayrbridge_edge_hub_connected", 1, 20*time.Second)
			requireConverged(t, hub, s, e)
			t.Logf("link cut for %s: drained %.1fs after link-up", outage, time.Since(up).Seconds())
		}
	})
}
