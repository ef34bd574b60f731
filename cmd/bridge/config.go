package main

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/ayrbridge/ayrbridge/ingest"
	"github.com/ayrbridge/ayrbridge/internal/envconfig"
	"github.com/ayrbridge/ayrbridge/internal/logging"
	"github.com/ayrbridge/ayrbridge/publish"
	"github.com/ayrbridge/ayrbridge/schema"
)

// config is every setting of the bridge; only environment variables set it.
type config struct {
	Listen          string        `env:"BRIDGE_LISTEN" envDefault:":8080"`
	MaxBodyBytes    int           `env:"BRIDGE_MAX_BODY_BYTES" envDefault:"1048576"`
	MaxHeaderBytes  int           `env:"BRIDGE_MAX_HEADER_BYTES" envDefault:"16384"`
	MaxConns        int           `env:"BRIDGE_MAX_CONNS" envDefault:"10000"`
	PublishTimeout  time.Duration `env:"BRIDGE_PUBLISH_TIMEOUT" envDefault:"5s"`
	ReadTimeout     time.Duration `env:"BRIDGE_READ_TIMEOUT" envDefault:"15s"`
	WriteTimeout    time.Duration `env:"BRIDGE_WRITE_TIMEOUT" envDefault:"10s"`
	IdleTimeout     time.Duration `env:"BRIDGE_IDLE_TIMEOUT" envDefault:"60s"`
	ShutdownTimeout time.Duration `env:"BRIDGE_SHUTDOWN_TIMEOUT" envDefault:"20s"`
	RetryAfter      time.Duration `env:"BRIDGE_RETRY_AFTER" envDefault:"5s"`

	Secrets        []string      `env:"AYRSHARE_WEBHOOK_SECRETS" envSeparator:","`
	ProfileSecrets string        `env:"AYRSHARE_PROFILE_SECRETS_DIR"`
	TimestampSkew  time.Duration `env:"AYRSHARE_SIGNATURE_MAX_SKEW" envDefault:"0s"`

	TLSCert        string        `env:"BRIDGE_TLS_CERT_FILE"`
	TLSKey         string        `env:"BRIDGE_TLS_KEY_FILE"`
	ReloadInterval time.Duration `env:"BRIDGE_RELOAD_INTERVAL" envDefault:"2s"`

	NATS        publish.ConnConfig
	Stream      string        `env:"NATS_STREAM" envDefault:"AYRSHARE"`
	Replicas    int           `env:"NATS_REPLICAS" envDefault:"1"`
	DedupWindow time.Duration `env:"NATS_DEDUP_WINDOW" envDefault:"24h"`
	MaxAge      time.Duration `env:"NATS_MAX_AGE" envDefault:"0s"`

	EmbeddedListen string `env:"NATS_EMBEDDED_LISTEN" envDefault:"127.0.0.1:4222"`
	EmbeddedDir    string `env:"NATS_EMBEDDED_DIR" envDefault:"./data"`
	// EmbeddedSyncAlways makes the embedded server (and an edge) fsync before every
	// acknowledgement: false lets a power cut lose the last two minutes of 200s.
	EmbeddedSyncAlways bool `env:"NATS_EMBEDDED_SYNC_ALWAYS" envDefault:"true"`
	// EmbeddedFsync is who fsyncs when EmbeddedSyncAlways is set: "server", nats-server after
	// every write, with atomic batches to share its fsyncs, or "group", the bridge, once for every
	// group of acknowledgements (publish.StoreSync): 1.9x server at 64 connections, but only
	// where the stream never deletes. At an edge, whose work queue deletes every forwarded event,
	// a power cut with the server's own bookkeeping unsynced made the edge reuse sequences the
	// hub had already taken, and the hub skipped the new events under them (TestPowerCutEdge
	// lost 1 to 5 of ~15,000). "auto" is group for a standalone embedded server whose stream
	// keeps every event, server otherwise.
	EmbeddedFsync string `env:"NATS_EMBEDDED_FSYNC" envDefault:"auto"`
	// AtomicBatches sends each large group of webhooks to an external server as one atomic
	// batch, which a server that syncs always flushes once. On a lazy server a batch costs ten
	// times what it saves (BenchmarkPublish), so it is off unless set; the embedded server and
	// an edge batch exactly when they sync always.
	AtomicBatches bool `env:"NATS_ATOMIC_BATCHES" envDefault:"false"`

	Hub hubConfig

	Log logging.Config
}

// hubConfig is the edge role: set NATS_HUB_URL (with NATS_URL empty) and the embedded server
// stores every webhook on its own disk and forwards it to the hub over a leaf link.
type hubConfig struct {
	URLs     []string      `env:"NATS_HUB_URL" envSeparator:","`
	EdgeID   string        `env:"NATS_EDGE_ID"`
	Domain   string        `env:"NATS_HUB_DOMAIN" envDefault:"hub"`
	Creds    string        `env:"NATS_HUB_CREDS"`
	NKeySeed string        `env:"NATS_HUB_NKEY"`
	TLSCA    string        `env:"NATS_HUB_TLS_CA"`
	TLSCert  string        `env:"NATS_HUB_TLS_CERT"`
	TLSKey   string        `env:"NATS_HUB_TLS_KEY"`
	MaxBytes int64         `env:"NATS_EDGE_MAX_BYTES" envDefault:"1073741824"`
	Attach   bool          `env:"NATS_HUB_ATTACH" envDefault:"true"`
	Every    time.Duration `env:"NATS_HUB_CHECK_INTERVAL" envDefault:"30s"`
}

// edgeID is what NATS_EDGE_ID may be: it becomes a server name, a JetStream domain and part of a
// stream name, which all take letters, digits and dashes.
var edgeID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,62}$`)

// defaultEdgeID makes a host name fit edgeID: every other character becomes a dash.
func defaultEdgeID(host string) string {
	id := strings.Trim(strings.Map(func(r rune) rune {
		if r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return r
		}
		return '-'
	}, host), "-")
	if len(id) > 63 {
		id = strings.TrimRight(id[:63], "-")
	}
	if id == "" {
		return "edge"
	}
	return id
}

// loadConfig parses environ (the process environment when nil) and validates the result.
func loadConfig(environ map[string]string) (config, error) {
	var cfg config
	if err := envconfig.Load(&cfg, environ); err != nil {
		return config{}, fmt.Errorf("config: %w", err)
	}
	if cfg.edge() && cfg.Hub.EdgeID == "" {
		host, _ := os.Hostname()
		cfg.Hub.EdgeID = defaultEdgeID(host)
	}
	if err := cfg.validate(); err != nil {
		return config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

func (c config) validate() error {
	var errs []error
	for _, v := range []struct {
		name  string
		value int64
	}{
		{"BRIDGE_MAX_BODY_BYTES", int64(c.MaxBodyBytes)}, {"BRIDGE_MAX_HEADER_BYTES", int64(c.MaxHeaderBytes)},
		{"BRIDGE_MAX_CONNS", int64(c.MaxConns)}, {"BRIDGE_PUBLISH_TIMEOUT", int64(c.PublishTimeout)},
		{"BRIDGE_READ_TIMEOUT", int64(c.ReadTimeout)}, {"BRIDGE_WRITE_TIMEOUT", int64(c.WriteTimeout)},
		{"BRIDGE_IDLE_TIMEOUT", int64(c.IdleTimeout)},
	} {
		if v.value <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive", v.name))
		}
	}
	if c.WriteTimeout <= c.PublishTimeout {
		// The answer is written after the publish; a shorter write timeout would cut it off.
		errs = append(errs, fmt.Errorf("BRIDGE_WRITE_TIMEOUT=%s must exceed BRIDGE_PUBLISH_TIMEOUT=%s", c.WriteTimeout, c.PublishTimeout))
	}
	if c.ShutdownTimeout <= c.PublishTimeout {
		errs = append(errs, fmt.Errorf("BRIDGE_SHUTDOWN_TIMEOUT=%s must exceed BRIDGE_PUBLISH_TIMEOUT=%s so requests in flight can finish", c.ShutdownTimeout, c.PublishTimeout))
	}
	switch {
	case c.EmbeddedFsync != "auto" && c.EmbeddedFsync != "group" && c.EmbeddedFsync != "server":
		errs = append(errs, fmt.Errorf("NATS_EMBEDDED_FSYNC=%q: want auto, server or group", c.EmbeddedFsync))
	case c.EmbeddedFsync == "group" && c.deletes():
		errs = append(errs, errors.New("NATS_EMBEDDED_FSYNC=group: only for an embedded server whose stream never deletes; an edge (NATS_HUB_URL) and NATS_MAX_AGE delete events, and a power cut could then make the stream reuse sequences"))
	}
	if c.RetryAfter < time.Second {
		errs = append(errs, fmt.Errorf("BRIDGE_RETRY_AFTER=%s: must be at least 1s", c.RetryAfter))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("BRIDGE_TLS_CERT_FILE and BRIDGE_TLS_KEY_FILE: set both to serve HTTPS, or neither for plain HTTP"))
	}
	if c.ReloadInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("BRIDGE_RELOAD_INTERVAL=%s: want at least 100ms", c.ReloadInterval))
	}
	if c.TimestampSkew < 0 {
		errs = append(errs, fmt.Errorf("AYRSHARE_SIGNATURE_MAX_SKEW=%s: must not be negative", c.TimestampSkew))
	}
	if err := c.Log.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.streamConfig().Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(c.Hub.URLs) > 0 {
		errs = append(errs, c.validateEdge())
	}
	return errors.Join(errs...)
}

func (c config) validateEdge() error {
	var errs []error
	if !c.embedded() {
		errs = append(errs, errors.New("NATS_HUB_URL and NATS_URL: set one; an edge runs its own server and dials the hub, NATS_URL uses a server that exists"))
	}
	if _, err := publish.ParseHubURLs(c.Hub.URLs); err != nil {
		errs = append(errs, fmt.Errorf("NATS_HUB_URL: %w", err))
	}
	if !edgeID.MatchString(c.Hub.EdgeID) {
		errs = append(errs, fmt.Errorf("NATS_EDGE_ID=%q: want 1 to 63 letters, digits and dashes, starting with a letter or digit", c.Hub.EdgeID))
	}
	if c.Hub.Domain == "" || strings.ContainsAny(c.Hub.Domain, ". *>") {
		errs = append(errs, fmt.Errorf("NATS_HUB_DOMAIN=%q: want the hub's JetStream domain, without dots or spaces", c.Hub.Domain))
	} else if c.Hub.Domain == publish.EdgeDomain(c.Hub.EdgeID) {
		errs = append(errs, fmt.Errorf("NATS_HUB_DOMAIN=%q is this edge's own domain", c.Hub.Domain))
	}
	if c.Hub.MaxBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("NATS_EDGE_MAX_BYTES=%d: want at least 1 MiB (1048576)", c.Hub.MaxBytes))
	}
	if c.Hub.MaxBytes < int64(c.MaxBodyBytes) {
		errs = append(errs, fmt.Errorf("NATS_EDGE_MAX_BYTES=%d is below BRIDGE_MAX_BODY_BYTES=%d", c.Hub.MaxBytes, c.MaxBodyBytes))
	}
	if c.Hub.Every < time.Second {
		errs = append(errs, fmt.Errorf("NATS_HUB_CHECK_INTERVAL=%s: want at least 1s", c.Hub.Every))
	}
	if (c.Hub.TLSCert == "") != (c.Hub.TLSKey == "") {
		errs = append(errs, errors.New("NATS_HUB_TLS_CERT and NATS_HUB_TLS_KEY: set both or neither"))
	}
	if c.Hub.Creds != "" && c.Hub.NKeySeed != "" {
		errs = append(errs, errors.New("NATS_HUB_CREDS and NATS_HUB_NKEY: set one"))
	}
	return errors.Join(errs...)
}

func (c config) embedded() bool { return len(c.NATS.URLs) == 0 }

// batches reports whether the publisher sends groups as atomic batches: they save fsyncs only
// where the server makes them.
func (c config) batches() bool {
	if c.embedded() {
		return c.EmbeddedSyncAlways && !c.groupFsync()
	}
	return c.AtomicBatches
}

// groupFsync reports whether the bridge fsyncs the embedded server's store itself, once per
// group of acknowledgements, while the server writes without syncing.
func (c config) groupFsync() bool {
	if !c.embedded() || !c.EmbeddedSyncAlways {
		return false
	}
	return c.EmbeddedFsync == "group" || c.EmbeddedFsync == "auto" && !c.deletes()
}

// deletes reports whether the bridge's own stream deletes events: an edge's work queue once
// the hub has them, a stream with NATS_MAX_AGE once they expire.
func (c config) deletes() bool { return len(c.Hub.URLs) > 0 || c.MaxAge > 0 }

// publisherOptions are the publisher's settings. Batches are staged and flushed one at a
// time per stream, so two groups in flight make larger batches and did more than eight
// (BenchmarkPublish); without batches eight committers keep more acks on their way.
func (c config) publisherOptions() []publish.Option {
	inFlight := 8
	if c.batches() {
		inFlight = 2
	}
	return []publish.Option{publish.WithTimeout(c.PublishTimeout), publish.WithAtomicBatches(c.batches()), publish.WithGroupsInFlight(inFlight)}
}

// edge reports the edge role: the embedded server is a leaf node of a hub.
func (c config) edge() bool { return len(c.Hub.URLs) > 0 && c.embedded() }

// edgeStream is the edge's own store, named after the edge so that many edges can be sources
// of one hub stream.
func (c config) edgeStream() publish.StreamConfig {
	sc := c.streamConfig()
	sc.Name = c.Stream + "_EDGE_" + c.Hub.EdgeID
	sc.Replicas = 1
	sc.MaxAge = 0
	sc.WorkQueue = true
	sc.MaxBytes = c.Hub.MaxBytes
	return sc
}

// localStream is the stream this bridge publishes to.
func (c config) localStream() publish.StreamConfig {
	if c.edge() {
		return c.edgeStream()
	}
	return c.streamConfig()
}

func (c config) hubLink() (*publish.HubLink, error) {
	urls, err := publish.ParseHubURLs(c.Hub.URLs)
	if err != nil {
		return nil, err
	}
	return &publish.HubLink{
		URLs: urls, Creds: c.Hub.Creds, NKeySeed: c.Hub.NKeySeed,
		TLSCA: c.Hub.TLSCA, TLSCert: c.Hub.TLSCert, TLSKey: c.Hub.TLSKey,
		Deny: []string{schema.StreamSubjects},
	}, nil
}

func (c config) server() ingest.ServerConfig {
	return ingest.ServerConfig{
		MaxBodyBytes:   c.MaxBodyBytes,
		MaxHeaderBytes: c.MaxHeaderBytes,
		MaxConns:       c.MaxConns,
		ReadTimeout:    c.ReadTimeout,
		WriteTimeout:   c.WriteTimeout,
		IdleTimeout:    c.IdleTimeout,
	}
}

func (c config) streamConfig() publish.StreamConfig {
	return publish.StreamConfig{
		Name:        c.Stream,
		Subjects:    []string{schema.StreamSubjects},
		Replicas:    c.Replicas,
		DedupWindow: c.DedupWindow,
		MaxAge:      c.MaxAge,
	}
}
