package publish

import (
	"errors"
	"fmt"
	"net"
	"strconv"
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
	// Domain is the JetStream domain; empty for a standalone server. Reserved for the edge
	// store-and-forward topology where a hub sources from this server over a leaf node.
	Domain string
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
	opts := &server.Options{
		ServerName:      "ayrbridge-embedded",
		Host:            host,
		Port:            port,
		JetStream:       true,
		JetStreamDomain: cfg.Domain,
		StoreDir:        cfg.StoreDir,
		MaxPayload:      cfg.MaxPayload,
		SyncAlways:      cfg.SyncAlways,
		NoSigs:          true, // the bridge owns signal handling
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
