package main

import (
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ayrbridge/ayrbridge/internal/metricstest"
	"github.com/ayrbridge/ayrbridge/internal/natstest"
)

// TestMetricNamesMatchDashboard scrapes a running bridge and an edge bridge and checks that the
// Grafana dashboard uses only metric families they export, and every ayrbridge_ one of them, and
// that the alert rules use only families they export.
func TestMetricNamesMatchDashboard(t *testing.T) {
	hub := natstest.RunHub(t)
	var scrape []byte
	for _, env := range []map[string]string{nil, {"NATS_HUB_URL": "nats-leaf://" + hub.LeafAddr(), "NATS_EDGE_ID": "m"}} {
		b := startBridge(t, env)
		post(t, b.URL+"/webhook", []byte(`{"action":"feed","hookId":"m"}`), nil)
		res, err := client.Get(b.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		text, _ := io.ReadAll(res.Body)
		res.Body.Close()
		scrape = append(scrape, text...)
	}
	dashboard, err := os.ReadFile("../../deploy/grafana/ayrbridge.json")
	if err != nil {
		t.Fatal(err)
	}
	rules, err := os.ReadFile("../../deploy/prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	exported := metricstest.Families(scrape, regexp.MustCompile(`(?m)^# TYPE (ayrbridge_\w+) `))
	// The replay's families, and its Pushgateway job ayrbridge_replay, are cmd/replay's to check.
	bridgeOnly := func(names []string) []string {
		return slices.DeleteFunc(names, func(n string) bool { return strings.HasPrefix(n+"_", "ayrbridge_replay_") })
	}
	name := regexp.MustCompile(`(ayrbridge_\w+)`)
	used := bridgeOnly(metricstest.Families(dashboard, name))
	if !slices.Equal(exported, used) {
		t.Fatalf("the bridge exports %v\nthe dashboard uses %v", exported, used)
	}
	if len(exported) != 20 {
		t.Fatalf("exported %d ayrbridge_ families, want 11 and the edge's 9: %v", len(exported), exported)
	}
	for _, n := range bridgeOnly(metricstest.Families(rules, name)) {
		if !slices.Contains(exported, n) {
			t.Errorf("alerts.yaml uses %s, which the bridge does not export", n)
		}
	}
}
