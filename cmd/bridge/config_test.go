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
		"BRIDGE_MAX_BODY_BYTES":       {"BRIDGE_MAX_BODY_BYTES": "0"},
		"BRIDGE_MAX_CONNS":            {"BRIDGE_MAX_CONNS": "-1"},
		"BRIDGE_PUBLISH_TIMEOUT":      {"BRIDGE_PUBLISH_TIMEOUT": "soon"},
		"BRIDGE_WRITE_TIMEOUT":        {"BRIDGE_WRITE_TIMEOUT": "1s", "BRIDGE_PUBLISH_TIMEOUT": "5s"},
		"BRIDGE_SHUTDOWN_TIMEOUT":     {"BRIDGE_SHUTDOWN_TIMEOUT": "2s"},
		"BRIDGE_RETRY_AFTER":          {"BRIDGE_RETRY_AFTER": "100ms"},
		"AYRSHARE_SIGNATURE_MAX_SKEW": {"AYRSHARE_SIGNATURE_MAX_SKEW": "-1m"},
		"LOG_FORMAT":                  {"LOG_FORMAT": "xml"},
		"replicas":                    {"NATS_REPLICAS": "7"},
		"dedup window":                {"NATS_DEDUP_WINDOW": "0s"},
		"max age":                     {"NATS_MAX_AGE": "1h"}, // shorter than the 24h dedup window
		"NATS_EMBEDDED_SYNC_ALWAYS":   {"NATS_EMBEDDED_SYNC_ALWAYS": "maybe"},
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
