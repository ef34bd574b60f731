package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ayrbridge/ayrbridge/internal/metricstest"
	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/internal/tlstest"
)

// TestMetricNamesMatchDashboard scrapes a running bridge and an edge bridge and checks that the
// Grafana dashboard uses only metric families they export, and every ayrbridge_ one of them, and
// that the alert rules use only families they export.
func TestMetricNamesMatchDashboard(t *testing.T) {
	hub := natstest.RunHub(t)
	ca, certs := tlstest.NewCA(t), t.TempDir()
	ca.Issue(t, filepath.Join(certs, "tls.crt"), filepath.Join(certs, "tls.key"))
	profiles := t.TempDir()
	if err := os.WriteFile(filepath.Join(profiles, "m1"), []byte("whsec-m1"), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	var scrape []byte
	for _, env := range []map[string]string{
		{"AYRSHARE_PROFILE_SECRETS_DIR": profiles, "AYRSHARE_WEBHOOK_SECRETS": "whsec-m"},
		{"NATS_HUB_URL": "nats-leaf://" + hub.LeafAddr(), "NATS_EDGE_ID": "m"},
		{"BRIDGE_TLS_CERT_FILE": filepath.Join(certs, "tls.crt"), "BRIDGE_TLS_KEY_FILE": filepath.Join(certs, "tls.key")},
	} {
		b := startBridge(t, env)
		c := client
		if strings.HasPrefix(b.URL, "https:") {
			c = tlsClient
			natstest.Eventually(t, 10*time.Second, func() error {
				res, err := c.Get(b.URL + "/readyz")
				if err == nil {
					res.Body.Close()
				}
				return err
			})
		}
		res, err := c.Post(b.URL+"/webhook", "application/json", strings.NewReader(`{"action":"feed","hookId":"m"}`))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res, err = c.Get(b.URL + "/metrics"); err != nil {
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
	if len(exported) != 24 {
		t.Fatalf("exported %d ayrbridge_ families, want 11, the edge's 9, the profile secrets' 3 and TLS's 1: %v", len(exported), exported)
	}
	for _, n := range bridgeOnly(metricstest.Families(rules, name)) {
		if !slices.Contains(exported, n) {
			t.Errorf("alerts.yaml uses %s, which the bridge does not export", n)
		}
	}
}
