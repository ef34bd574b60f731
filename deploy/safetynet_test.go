package deploy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ayrbridge/ayrbridge/internal/metricstest"
	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/internal/powercut"
	"github.com/ayrbridge/ayrbridge/internal/proc"
	"github.com/ayrbridge/ayrbridge/internal/proctest"
	"github.com/ayrbridge/ayrbridge/publish"
	"github.com/ayrbridge/ayrbridge/schema"
)

// TestReplayRefillsLazyHubAfterPowerCut is the safety net under a hub that does not sync: run
// from deploy/nats/hub.conf without its sync_interval line, it loses webhooks the bridge
// answered 200 when the power is cut. The continuous replay then finds them in Ayrshare's
// history, stores them again, counts exactly them in ayrbridge_replay_missing_events_total, and
// the AyrbridgeReplayMissingEvents rule's query, evaluated by promtool on that scrape, is non-zero.
func TestReplayRefillsLazyHubAfterPowerCut(t *testing.T) {
	proctest.SkipShort(t, "runs nats-server, the bridge and the replay as processes")
	if err := powercut.Available(); err != nil {
		t.Skipf("power-cut tests need root and FUSE: %v", err)
	}
	fs := powercut.New(t)
	ports := proctest.FreePorts(t, 3)
	conf := string(readDeployFiles(t, ".")["nats/hub.conf"])
	if !strings.Contains(conf, "sync_interval: always") {
		t.Fatal("deploy/nats/hub.conf no longer syncs always: the durable hub this test is the control of")
	}
	for old, repl := range map[string]string{
		"  sync_interval: always\n": "",
		"/data":                     filepath.Join(fs.Dir(), "hub"),
		"0.0.0.0:4222":              fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"0.0.0.0:8222":              fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"0.0.0.0:7422":              fmt.Sprintf("127.0.0.1:%d", ports[2]),
	} {
		if !strings.Contains(conf, old) {
			t.Fatalf("deploy/nats/hub.conf has no %q to rewrite", old)
		}
		conf = strings.ReplaceAll(conf, old, repl)
	}
	confFile := filepath.Join(t.TempDir(), "hub.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", ports[0])
	hub := natstest.StartServerProcessConf(t, confFile, natsURL)

	// 300 webhooks through the bridge, each answered 200; the bridge stops with its subtest.
	history := map[string][][]byte{}
	const n = 300
	t.Run("bridge", func(t *testing.T) {
		bridge := startBridgeEnv(t, "NATS_URL="+natsURL)
		waitReady(t, "http://"+bridge+"/readyz")
		for i := range n {
			body := fmt.Appendf(nil, `{"action":"social","type":"link","hookId":"net%04d","refId":"r1","created":"%s"}`, i, time.Now().UTC().Format(time.RFC3339))
			postWebhook(t, "http://"+bridge+"/webhook", body, "")
			history["social"] = append(history["social"], body)
		}
	})
	if t.Failed() {
		return
	}

	undone, err := fs.Cut(hub.Kill)
	if err != nil {
		t.Fatal(err)
	}
	hub.Start()
	js := natstest.ConnectURL(t, natsURL)
	// The bridge recreates a stream that vanished at its next start; this is that start.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := publish.EnsureStream(ctx, js, publish.StreamConfig{
		Name: "AYRSHARE", Subjects: []string{schema.StreamSubjects}, Replicas: 1, DedupWindow: 24 * time.Hour,
	}); err != nil {
		t.Fatal(err)
	}
	present := len(natstest.Messages(t, js, "AYRSHARE"))
	lost := n - present
	t.Logf("the lazy hub lost %d of %d acknowledged webhooks at the cut (%d writes undone)", lost, n, undone.Writes)
	if lost == 0 {
		t.Fatal("the lazy hub lost nothing: the cut does not bite, and the replay has nothing to show")
	}

	api := fakeHistory(t, history)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", proctest.FreePorts(t, 1)[0])
	rp := proctest.Start(t, proc.Config{Bin: proctest.Build(t, "./cmd/replay"), Args: []string{"--every", "2s", "--since", "30d"}, Env: []string{
		"AYRSHARE_API_KEY=safety-net-key", "AYRSHARE_API_URL=" + api.URL, "NATS_URL=" + natsURL,
		"REPLAY_METRICS_LISTEN=" + metricsAddr, "REPLAY_BACKOFF=10ms", "REPLAY_MAX_BACKOFF=20ms",
	}})
	var scrape map[string]float64
	natstest.Eventually(t, 60*time.Second, func() error {
		select {
		case <-rp.Done():
			t.Fatalf("replay exited: %v", rp.Err())
		default:
		}
		var err error
		if scrape, err = metricstest.Scrape(t.Context(), "http://"+metricsAddr+"/metrics"); err != nil {
			return err
		}
		if scrape[`ayrbridge_replay_passes_total{result="ok"}`] < 1 {
			return fmt.Errorf("no pass finished yet")
		}
		if got := metricstest.Sum(scrape, "ayrbridge_replay_missing_events_total"); got != float64(lost) {
			t.Fatalf("ayrbridge_replay_missing_events_total = %v, want the %d the cut lost", got, lost)
		}
		return nil
	})
	if got := len(natstest.Messages(t, js, "AYRSHARE")); got != n {
		t.Fatalf("after the replay the stream holds %d, want all %d", got, n)
	}
	requireAlertQuery(t, "AyrbridgeReplayMissingEvents", scrape, float64(lost))
}

// fakeHistory serves Ayrshare's GET /api/hook/history: the bodies, grouped by action.
func fakeHistory(t *testing.T, history map[string][][]byte) *httptest.Server {
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/hook/history" || r.Header.Get("Authorization") != "Bearer safety-net-key" {
			http.Error(w, `{"status":"error"}`, http.StatusUnauthorized)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		var parts []string
		for action, bodies := range history {
			if a := r.URL.Query().Get("action"); a != "" && a != action {
				continue
			}
			parts = append(parts, fmt.Sprintf("%q:[%s]", action, bytes.Join(bodies, []byte(","))))
		}
		io.WriteString(w, "{"+strings.Join(parts, ",")+"}")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// requireAlertQuery evaluates the expression of alert in deploy/prometheus/alerts.yaml with
// promtool over one scrape of the replay (as job ayrbridge-replay) and requires it to be want.
func requireAlertQuery(t *testing.T, alert string, scrape map[string]float64, want float64) {
	t.Helper()
	var rules struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	if err := yaml.Unmarshal(readDeployFiles(t, ".")["prometheus/alerts.yaml"], &rules); err != nil {
		t.Fatal(err)
	}
	expr := ""
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == alert {
				expr = r.Expr
			}
		}
	}
	if expr == "" {
		t.Fatalf("no alert %s in alerts.yaml", alert)
	}
	// The scraped counters as input series, as Prometheus would store them from this scrape on.
	var series []map[string]string
	for key, v := range scrape {
		if name, labels, ok := strings.Cut(key, "{"); ok && name == "ayrbridge_replay_missing_events_total" {
			series = append(series, map[string]string{
				"series": name + `{job="ayrbridge-replay",instance="replay:9091",` + labels,
				"values": fmt.Sprintf("%vx10", v),
			})
		}
	}
	test := map[string]any{
		"evaluation_interval": "1m",
		"tests": []any{map[string]any{
			"interval":     "1m",
			"input_series": series,
			"promql_expr_test": []any{map[string]any{
				"expr": expr, "eval_time": "5m",
				"exp_samples": []any{map[string]any{"labels": `{job="ayrbridge-replay",instance="replay:9091"}`, "value": want}},
			}},
		}},
	}
	b, err := yaml.Marshal(test)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "scrape_test.yaml")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, buildPromtool(t), "test", "rules", file).CombinedOutput(); err != nil {
		t.Fatalf("%s's query on the replay's scrape is not %v: %v\n%s", alert, want, err, out)
	}
}
