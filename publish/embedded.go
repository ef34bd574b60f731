package publish

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
)

// EmbeddedConfig configures the nats-server the bridge runs in-process when no NATS_URL is set.
type EmbeddedConfig struct {
	Listen     string // host:port for external clients (subscribers, the replay job); port 0 picks one
	StoreDir   string // JetStream file store
	MaxPayload int32  // largest message accepted; 0 means the server default (1 MB)
	// SyncAlways fsyncs every write before the ack. Without it each message is still written to
	// the file before the ack (so a killed process loses nothing) but the OS may hold it in its
	// page cache for up to the sync interval, which only a power or kernel failure can lose.
	SyncAlways bool
	// Name is the server name; empty means "ayrbridge-embedded". An edge's must be unique
	// among the hub's leaf nodes.
	Name string
	// Domain is the JetStream domain; empty for a standalone server. An edge has its own, so
	// that its JetStream API is reachable from the hub as $JS.<domain>.API and no other's.
	Domain string
	// MaxStore caps the JetStream file store in bytes (0: the server's default, 75 % of the
	// disk). An edge sets it so that a full disk cannot disable JetStream.
	MaxStore int64
	// Hub, when set, makes the server a leaf node of a hub: the edge role.
	Hub *HubLink
}

// HubLink is how an edge's server dials its hub. The leaf connection never carries the
// subjects in Deny, so a publish at the edge is stored by the edge's stream only and reaches the
// hub through sourcing, once.
type HubLink struct {
	URLs     []*url.URL // nats-leaf://, tls://, ws:// or wss:// leaf URLs of the hub
	Creds    string     // path to a .creds file
	NKeySeed string     // path to an nkey seed file
	TLSCA    string     // path to the CA bundle that signs the hub's leaf certificate
	TLSCert  string     // path to a client certificate (with TLSKey)
	TLSKey   string
	Deny     []string      // subjects kept off the link in both directions
	Redial   time.Duration // pause between attempts to reach the hub; 0 means 2s
}

// ParseHubURLs parses comma-split leaf URLs, refusing schemes a leaf remote cannot dial.
func ParseHubURLs(raw []string) ([]*url.URL, error) {
	var out []*url.URL
	var errs []error
	for _, r := range raw {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		u, err := url.Parse(r)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("hub url %q: %w", r, err))
		case !slices.Contains([]string{"nats-leaf", "nats", "tls", "ws", "wss"}, u.Scheme):
			errs = append(errs, fmt.Errorf("hub url %q: scheme must be nats-leaf, tls, ws or wss", r))
		case u.Host == "":
			errs = append(errs, fmt.Errorf("hub url %q: no host", r))
		default:
			out = append(out, u)
		}
	}
	if len(errs) == 0 && len(out) == 0 {
		errs = append(errs, errors.New("hub url: none given"))
	}
	return out, errors.Join(errs...)
}

func (h *HubLink) remote() (*server.RemoteLeafOpts, error) {
	r := &server.RemoteLeafOpts{
		URLs:        h.URLs,
		Credentials: h.Creds,
		DenyImports: h.Deny,
		DenyExports: h.Deny,
		// A hub behind a load balancer, or a test's proxy, advertises addresses the edge must
		// not dial around it.
		IgnoreDiscoveredServers: true,
	}
	if h.NKeySeed != "" {
		seed, err := os.ReadFile(h.NKeySeed)
		if err != nil {
			return nil, fmt.Errorf("hub nkey seed: %w", err)
		}
		r.Nkey = strings.TrimSpace(string(seed))
	}
	if (h.TLSCert == "") != (h.TLSKey == "") {
		return nil, errors.New("hub tls: client certificate and key must be given together")
	}
	if h.TLSCA != "" || h.TLSCert != "" || slices.ContainsFunc(h.URLs, func(u *url.URL) bool { return u.Scheme == "tls" || u.Scheme == "wss" }) {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CaFile: h.TLSCA, CertFile: h.TLSCert, KeyFile: h.TLSKey})
		if err != nil {
			return nil, fmt.Errorf("hub tls: %w", err)
		}
		// GenTLSConfig builds a server's config: the CA lands in ClientCAs, the pool that checks
		// clients. The edge dials, so the hub's certificate is checked against RootCAs, as
		// nats-server's own parser of leaf remotes does; without this a private CA is ignored.
		if tc.ClientCAs != nil {
			tc.RootCAs, tc.ClientCAs = tc.ClientCAs, nil
		}
		r.TLS, r.TLSConfig = true, tc
	}
	return r, nil
}

// StartEmbedded starts a JetStream-enabled nats-server and waits until it takes connections.
// The caller owns it: Shutdown and WaitForShutdown when done.
func StartEmbedded(cfg EmbeddedConfig, log zerolog.Logger) (*server.Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("embedded nats: store directory is empty")
	}
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded nats listen %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded nats listen %q: bad port: %w", cfg.Listen, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	} else {
		// nats-server only logs a failed listen; probing first turns it into a clear error.
		l, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats cannot listen on %s: %w", cfg.Listen, err)
		}
		l.Close()
	}
	name := cfg.Name
	if name == "" {
		name = "ayrbridge-embedded"
	}
	opts := &server.Options{
		ServerName:        name,
		Host:              host,
		Port:              port,
		JetStream:         true,
		JetStreamDomain:   cfg.Domain,
		StoreDir:          cfg.StoreDir,
		MaxPayload:        cfg.MaxPayload,
		SyncAlways:        cfg.SyncAlways,
		NoSigs:            true, // the bridge owns signal handling
		JetStreamMaxStore: cfg.MaxStore,
	}
	if cfg.Hub != nil {
		r, err := cfg.Hub.remote()
		if err != nil {
			return nil, fmt.Errorf("embedded nats: %w", err)
		}
		opts.LeafNode.Remotes = []*server.RemoteLeafOpts{r}
		opts.LeafNode.ReconnectInterval = cmp.Or(cfg.Hub.Redial, 2*time.Second)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	ns.SetLoggerV2(serverLogger{log.With().Str("component", "nats-server").Logger()}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("embedded nats: not ready for connections after 30s (is the port in use or the store locked?)")
	}
	return ns, nil
}

// serverLogger adapts zerolog to nats-server's logger.
type serverLogger struct{ log zerolog.Logger }

func (l serverLogger) Noticef(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l serverLogger) Warnf(format string, v ...any)   { l.log.Warn().Msgf(format, v...) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l serverLogger) Errorf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l serverLogger) Debugf(format string, v ...any)  { l.log.Debug().Msgf(format, v...) }
func (l serverLogger) Tracef(format string, v ...any)  { l.log.Trace().Msgf(format, v...) }
