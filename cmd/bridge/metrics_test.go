package main

import (
	"io"
	"os"
	"regexp"
	"slices"
	"testing"

	"github.com/ayrbridge/ayrbridge/internal/natstest"
)

// TestMetricNamesMatchDashboard scrapes a running bridge and an edge bridge and checks that the
// Grafana dashboard uses only metric families they export, and every ayrbridge_ one of them.
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
	families := func(text []byte, re *regexp.Regexp) []string {
		var out []string
		for _, m := range re.FindAllSubmatch(text, -1) {
			name := regexp.MustCompile(`_(bucket|sum|count)$`).ReplaceAllString(string(m[1]), "")
			if !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
		slices.Sort(out)
		return out
	}
	exported := families(scrape, regexp.MustCompile(`(?m)^# TYPE (ayrbridge_\w+) `))
	used := families(dashboard, regexp.MustCompile(`(ayrbridge_\w+)`))
	if !slices.Equal(exported, used) {
		t.Fatalf("the bridge exports %v\nthe dashboard uses %v", exported, used)
	}
	if len(exported) != 19 {
		t.Fatalf("exported %d ayrbridge_ families, want 10 and the edge's 9: %v", len(exported), exported)
	}
}
