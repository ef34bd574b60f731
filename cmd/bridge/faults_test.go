package main

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/internal/proctest"
)

// TestNATSServerKilledUnderLoad kills an external nats-server process (file storage) under
// load and starts it again: meanwhile the bridge answers 503 within its publish timeout and
// is not ready; afterwards it recovers on its own, and every 2xx is stored exactly once.
func TestNATSServerKilledUnderLoad(t *testing.T) {
	proctest.SkipShort(t, "builds nats-server and kills it under load")
	srv := natstest.StartServerProcess(t)
	const publishTimeout = time.Second
	b := startBridge(t, map[string]string{"NATS_URL": srv.URL, "BRIDGE_PUBLISH_TIMEOUT": publishTimeout.String(), "BRIDGE_RETRY_AFTER": "1s"})
	l := startLoad(b.URL, 16, "nkill")
	l.waitAcked(t, 200)

	srv.Kill()
	killedAt := time.Now()
	natstest.Eventually(t, 10*time.Second, func() error {
		if code, _ := tryGet(b.URL + "/readyz"); code != 503 {
			return errNotYet("readyz %d while NATS is down", code)
		}
		return nil
	})
	// What the not-ready alert reads.
	if v, err := scrapeMetric(b.URL, "ayrbridge_ready"); err != nil || v != 0 {
		t.Errorf("ayrbridge_ready = %v, %v while NATS is down, want 0", v, err)
	}
	if code, _ := tryGet(b.URL + "/healthz"); code != 200 {
		t.Errorf("healthz %d while NATS is down: liveness must not fail, or orchestrators restart a healthy bridge", code)
	}
	time.Sleep(2 * publishTimeout)
	before := l.ackedCount()
	srv.Start()
	restartedAt := time.Now()
	l.waitAcked(t, before+200)
	if v, err := scrapeMetric(b.URL, "ayrbridge_ready"); err != nil || v != 1 {
		t.Errorf("ayrbridge_ready = %v, %v once NATS is back, want 1", v, err)
	}
	acked := l.finish()
	outage, slowest := l.longestOutage()
	t.Logf("nats-server down %s; sent %d, acknowledged %d, refused %d; longest 503 window %s; slowest request %s",
		restartedAt.Sub(killedAt).Round(time.Millisecond), l.sent.Load(), len(acked), l.refused.Load(), outage.Round(time.Millisecond), slowest.Round(time.Millisecond))
	if l.bad.Load() != 0 {
		t.Fatalf("%d answers were neither 2xx nor 503", l.bad.Load())
	}
	if l.refused.Load() == 0 {
		t.Fatal("no request was refused while NATS was down")
	}
	// A hang would be a request waiting far past its publish timeout.
	if slowest > 3*publishTimeout {
		t.Fatalf("a request took %s with a %s publish timeout", slowest, publishTimeout)
	}
	requireStoredOnce(t, srv.URL, acked)
}

// TestClusterLeaderLoss kills the stream leader of a 3-node JetStream cluster (R3 stream)
// under load: the bridge keeps serving after the election, loses nothing and stores nothing
// twice.
func TestClusterLeaderLoss(t *testing.T) {
	proctest.SkipShort(t, "runs a 3-node cluster and kills its stream leader under load")
	nodes := natstest.RunCluster(t, 3)
	var urls []string
	for _, ns := range nodes {
		urls = append(urls, ns.ClientURL())
	}
	b := startBridge(t, map[string]string{"NATS_URL": strings.Join(urls, ","), "NATS_REPLICAS": "3",
		"BRIDGE_PUBLISH_TIMEOUT": "2s", "BRIDGE_RETRY_AFTER": "1s"})
	l := startLoad(b.URL, 16, "leader")
	l.waitAcked(t, 200)

	js := streamJS(t, strings.Join(urls, ","))
	s, err := js.Stream(t.Context(), "AYRSHARE")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil || info.Cluster.Leader == "" {
		t.Fatalf("stream is not replicated: %+v", info.Cluster)
	}
	leader := info.Cluster.Leader
	var survivors []string
	for _, ns := range nodes {
		if ns.Name() == leader {
			ns.Shutdown()
			continue
		}
		survivors = append(survivors, ns.ClientURL())
	}
	before := l.ackedCount()
	l.waitAcked(t, before+300)
	acked := l.finish()
	outage, slowest := l.longestOutage()
	var newLeader string
	natstest.Eventually(t, 10*time.Second, func() error {
		info, err := streamInfo(t, strings.Join(survivors, ","))
		if err != nil {
			return err
		}
		newLeader = info.Cluster.Leader
		return nil
	})
	t.Logf("killed leader %s, new leader %s; sent %d, acknowledged %d, refused %d; longest 503 window %s; slowest request %s",
		leader, newLeader, l.sent.Load(), len(acked), l.refused.Load(), outage.Round(time.Millisecond), slowest.Round(time.Millisecond))
	if l.bad.Load() != 0 {
		t.Fatalf("%d answers were neither 2xx nor 503", l.bad.Load())
	}
	requireStoredOnce(t, strings.Join(survivors, ","), acked)
}

func streamInfo(t *testing.T, url string) (*jetstream.StreamInfo, error) {
	t.Helper()
	s, err := streamJS(t, url).Stream(t.Context(), "AYRSHARE")
	if err != nil {
		return nil, err
	}
	info, err := s.Info(t.Context())
	if err != nil {
		return nil, err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return nil, errNotYet("no stream leader")
	}
	return info, nil
}
