package main

import (
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.embedded() || cfg.Listen != ":8080" || cfg.MaxBodyBytes != 1<<20 || cfg.Stream != "AYRSHARE" ||
		cfg.Replicas != 1 || cfg.DedupWindow != 24*time.Hour || cfg.MaxAge != 0 || cfg.EmbeddedListen != "127.0.0.1:4222" ||
		cfg.EmbeddedDir != "./data" || cfg.PublishTimeout != 5*time.Second || len(cfg.Secrets) != 0 || cfg.Log.Format != "json" {
		t.Fatalf("defaults: %+v", cfg)
	}
}

func TestConfigLists(t *testing.T) {
	cfg, err := loadConfig(map[string]string{
		"AYRSHARE_WEBHOOK_SECRETS": " new ,, old ,",
		"NATS_URL":                 "nats://a:4222, nats://b:4222,",
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Secrets, "|") != "new|old" || strings.Join(cfg.NATS.URLs, "|") != "nats://a:4222|nats://b:4222" || cfg.embedded() {
		t.Fatalf("secrets %q urls %q", cfg.Secrets, cfg.NATS.URLs)
	}
}

func TestConfigRefusals(t *testing.T) {
	tests := map[string]map[string]string{
		"BRIDGE_MAX_BODY_BYTES":                        {"BRIDGE_MAX_BODY_BYTES": "0"},
		"BRIDGE_MAX_CONNS":                             {"BRIDGE_MAX_CONNS": "-1"},
		"BRIDGE_PUBLISH_TIMEOUT":                       {"BRIDGE_PUBLISH_TIMEOUT": "soon"},
		"BRIDGE_WRITE_TIMEOUT":                         {"BRIDGE_WRITE_TIMEOUT": "1s", "BRIDGE_PUBLISH_TIMEOUT": "5s"},
		"BRIDGE_SHUTDOWN_TIMEOUT":                      {"BRIDGE_SHUTDOWN_TIMEOUT": "2s"},
		"BRIDGE_RETRY_AFTER":                           {"BRIDGE_RETRY_AFTER": "100ms"},
		"AYRSHARE_SIGNATURE_MAX_SKEW":                  {"AYRSHARE_SIGNATURE_MAX_SKEW": "-1m"},
		"BRIDGE_TLS_CERT_FILE and BRIDGE_TLS_KEY_FILE": {"BRIDGE_TLS_CERT_FILE": "tls.crt"},
		"BRIDGE_TLS_KEY_FILE: set both":                {"BRIDGE_TLS_KEY_FILE": "tls.key"},
		"BRIDGE_RELOAD_INTERVAL":                       {"BRIDGE_RELOAD_INTERVAL": "10ms"},
		"LOG_FORMAT":                                   {"LOG_FORMAT": "xml"},
		"replicas":                                     {"NATS_REPLICAS": "7"},
		"dedup window":                                 {"NATS_DEDUP_WINDOW": "0s"},
		"max age":                                      {"NATS_MAX_AGE": "1h"}, // shorter than the 24h dedup window
		"NATS_EMBEDDED_SYNC_ALWAYS":                    {"NATS_EMBEDDED_SYNC_ALWAYS": "maybe"},
		"NATS_HUB_URL and NATS_URL":                    {"NATS_HUB_URL": "nats-leaf://hub:7422", "NATS_URL": "nats://n:4222"},
		"NATS_HUB_URL: hub url":                        {"NATS_HUB_URL": "http://hub:7422"},
		"NATS_EDGE_ID":                                 {"NATS_HUB_URL": "nats-leaf://hub:7422", "NATS_EDGE_ID": "eu.1"},
		"NATS_HUB_DOMAIN":                              {"NATS_HUB_URL": "nats-leaf://hub:7422", "NATS_HUB_DOMAIN": "a.b"},
		"own domain":                                   {"NATS_HUB_URL": "nats-leaf://hub:7422", "NATS_EDGE_ID": "x", "NATS_HUB_DOMAIN": "ayr-edge-x"},
		"NATS_EDGE_MAX_BYTES":                          {"NATS_HUB_URL": "nats-leaf://hub:7422", "NATS_EDGE_MAX_BYTES": "1000"},
		"NATS_HUB_TLS_CERT":                            {"NATS_HUB_URL": "tls://hub:7422", "NATS_HUB_TLS_CERT": "c.pem"},
		"NATS_HUB_CREDS and NATS_HUB_NKEY":             {"NATS_HUB_URL": "nats-leaf://hub:7422", "NATS_HUB_CREDS": "a", "NATS_HUB_NKEY": "b"},
		"NATS_HUB_ATTACH":                              {"NATS_HUB_URL": "nats-leaf://hub:7422", "NATS_HUB_ATTACH": "sometimes"},
		"NATS_EMBEDDED_FSYNC=\"always\"":               {"NATS_EMBEDDED_FSYNC": "always"},
		"NATS_EMBEDDED_FSYNC=group: only":              {"NATS_EMBEDDED_FSYNC": "group", "NATS_HUB_URL": "nats-leaf://hub:7422"},
		"NATS_EMBEDDED_FSYNC=group: only for":          {"NATS_EMBEDDED_FSYNC": "group", "NATS_MAX_AGE": "720h"},
	}
	for want, environ := range tests {
		t.Run(want, func(t *testing.T) {
			_, err := loadConfig(environ)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(want)) {
				t.Fatalf("error %q does not name %s", err, want)
			}
		})
	}
}

func TestStartupLogRedactsSecrets(t *testing.T) {
	cfg, err := loadConfig(map[string]string{
		"AYRSHARE_WEBHOOK_SECRETS": "whsec-one,whsec-two",
		"NATS_URL":                 "nats://u:pass-in-url@nats:4222",
		"NATS_USER":                "u", "NATS_PASSWORD": "nats-pass", "NATS_TOKEN": "nats-token",
	})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	logStartup(cfg, cfg.Log.New(&out, "bridge"))
	line := out.String()
	for _, secret := range []string{"whsec-one", "whsec-two", "pass-in-url", "nats-pass", "nats-token"} {
		if strings.Contains(line, secret) {
			t.Errorf("startup line shows %q: %s", secret, line)
		}
	}
	for _, want := range []string{`"webhook_secrets":2`, `"auth":"user/password"`, `"listen":":8080"`, `"dedup_window":"24h0m0s"`} {
		if !strings.Contains(line, want) {
			t.Errorf("startup line lacks %s: %s", want, line)
		}
	}
}

func TestConfigEdge(t *testing.T) {
	cfg, err := loadConfig(map[string]string{"NATS_HUB_URL": "nats-leaf://h1:7422, tls://h2:7422,", "NATS_EDGE_ID": "eu-1"})
	if err != nil {
		t.Fatal(err)
	}
	edge := cfg.edgeStream()
	if !cfg.edge() || cfg.Hub.Domain != "hub" || !cfg.Hub.Attach || cfg.Hub.MaxBytes != 1<<30 ||
		edge.Name != "AYRSHARE_EDGE_eu-1" || !edge.WorkQueue || edge.MaxBytes != 1<<30 || edge.MaxAge != 0 ||
		cfg.localStream().Name != edge.Name || cfg.streamConfig().Name != "AYRSHARE" {
		t.Fatalf("edge config %+v, stream %+v", cfg.Hub, edge)
	}
	link, err := cfg.hubLink()
	if err != nil || len(link.URLs) != 2 || link.URLs[1].Scheme != "tls" || len(link.Deny) != 1 || link.Deny[0] != "ayrshare.>" {
		t.Fatalf("hub link %+v, %v", link, err)
	}
	// Without NATS_HUB_URL nothing changes.
	if cfg, _ := loadConfig(map[string]string{"NATS_EDGE_ID": "eu-1"}); cfg.edge() || cfg.localStream().Name != "AYRSHARE" {
		t.Fatal("NATS_EDGE_ID alone made an edge")
	}
}

func TestDefaultEdgeID(t *testing.T) {
	for host, want := range map[string]string{
		"edge-7":                       "edge-7",
		"ip-10-0-0-1.ec2.internal":     "ip-10-0-0-1-ec2-internal",
		"_weird_":                      "weird",
		"":                             "edge",
		strings.Repeat("a", 70):        strings.Repeat("a", 63),
		strings.Repeat("a", 62) + ".b": strings.Repeat("a", 62),
	} {
		got := defaultEdgeID(host)
		if got != want || !edgeID.MatchString(got) {
			t.Errorf("defaultEdgeID(%q) = %q, want %q", host, got, want)
		}
	}
}

// TestConfigFsync: the bridge fsyncs the store itself only for a standalone embedded stream
// that keeps every event; an edge or a stream with a max age leaves it to nats-server, whose
// groups then go as atomic batches.
func TestConfigFsync(t *testing.T) {
	tests := []struct {
		environ        map[string]string
		group, batches bool
	}{
		{map[string]string{}, true, false},
		{map[string]string{"NATS_EMBEDDED_FSYNC": "server"}, false, true},
		{map[string]string{"NATS_MAX_AGE": "720h"}, false, true},
		{map[string]string{"NATS_HUB_URL": "nats-leaf://hub:7422"}, false, true},
		{map[string]string{"NATS_EMBEDDED_SYNC_ALWAYS": "false"}, false, false},
		{map[string]string{"NATS_URL": "nats://n:4222"}, false, false},
		{map[string]string{"NATS_URL": "nats://n:4222", "NATS_ATOMIC_BATCHES": "true"}, false, true},
	}
	for _, tt := range tests {
		cfg, err := loadConfig(tt.environ)
		if err != nil {
			t.Fatalf("%v: %v", tt.environ, err)
		}
		if cfg.groupFsync() != tt.group || cfg.batches() != tt.batches {
			t.Errorf("%v: group fsync %v, batches %v; want %v, %v", tt.environ, cfg.groupFsync(), cfg.batches(), tt.group, tt.batches)
		}
	}
}
