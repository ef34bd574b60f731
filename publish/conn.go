package publish

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// ConnConfig says how to reach and authenticate to NATS. Only one credential kind is used:
// creds file, then nkey seed file, then user/password, then token. The env tags name the
// variables every ayrbridge command reads (each main parses them; this package reads nothing).
type ConnConfig struct {
	URLs     []string `env:"NATS_URL" envSeparator:","` // nats:// or tls:// server URLs
	Name     string   // client connection name shown by the server
	Creds    string   `env:"NATS_CREDS"`    // path to a .creds file (JWT + nkey)
	NKeySeed string   `env:"NATS_NKEY"`     // path to an nkey seed file
	User     string   `env:"NATS_USER"`     // with NATS_PASSWORD
	Password string   `env:"NATS_PASSWORD"` // never logged
	Token    string   `env:"NATS_TOKEN"`    // never logged
	TLSCA    string   `env:"NATS_TLS_CA"`   // path to a CA bundle that signs the server certificate
	TLSCert  string   `env:"NATS_TLS_CERT"` // path to a client certificate (with NATS_TLS_KEY)
	TLSKey   string   `env:"NATS_TLS_KEY"`  // path to the client certificate's key
}

// LogDict describes cfg for a startup log line, with every secret left out.
func (cfg ConnConfig) LogDict() *zerolog.Event {
	auth := "none"
	switch {
	case cfg.Creds != "":
		auth = "creds"
	case cfg.NKeySeed != "":
		auth = "nkey"
	case cfg.User != "":
		auth = "user/password"
	case cfg.Token != "":
		auth = "token"
	}
	return zerolog.Dict().Strs("urls", RedactURLs(cfg.URLs)).Str("auth", auth).
		Bool("tls_client_cert", cfg.TLSCert != "").Str("tls_ca", cfg.TLSCA)
}

// RedactURLs hides any user:password embedded in server URLs.
func RedactURLs(urls []string) []string {
	out := make([]string, len(urls))
	for i, u := range urls {
		if at := strings.LastIndex(u, "@"); at >= 0 {
			scheme := ""
			if i := strings.Index(u, "://"); i >= 0 && i < at {
				scheme = u[:i+3]
			}
			u = scheme + "[redacted]" + u[at:]
		}
		out[i] = u
	}
	return out
}

// Connect dials NATS (or the in-process server when srv is non-nil) and keeps reconnecting
// forever. The first connection is retried in the background, so Connect returns even while
// NATS is down; callers learn readiness from the connection's status.
func Connect(cfg ConnConfig, srv *server.Server, log zerolog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		// Without a reconnect buffer a publish fails at once while NATS is away instead of
		// being sent minutes later, after its webhook was answered 503 and is being retried.
		nats.ReconnectBufSize(-1),
		nats.PingInterval(10 * time.Second),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				return // closed on purpose, as at shutdown
			}
			log.Warn().Err(err).Msg("nats disconnected")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("server", nc.ConnectedUrlRedacted()).Msg("nats reconnected")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := log.Warn().Err(err)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("nats async error")
		}),
	}
	auth, err := authOptions(cfg)
	if err != nil {
		return nil, err
	}
	opts = append(opts, auth...)
	url := strings.Join(cfg.URLs, ",")
	if srv != nil {
		opts = append(opts, nats.InProcessServer(srv))
		url = ""
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	return nc, nil
}

func authOptions(cfg ConnConfig) ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case cfg.Creds != "":
		opts = append(opts, nats.UserCredentials(cfg.Creds))
	case cfg.NKeySeed != "":
		opt, err := nats.NkeyOptionFromSeed(cfg.NKeySeed)
		if err != nil {
			return nil, fmt.Errorf("nats nkey seed: %w", err)
		}
		opts = append(opts, opt)
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCA))
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("nats tls: client certificate and key must be given together")
	}
	if cfg.TLSCert != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSCert, cfg.TLSKey))
	}
	return opts, nil
}

// WaitConnected blocks until nc is connected or ctx ends.
func WaitConnected(ctx context.Context, nc *nats.Conn) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !nc.IsConnected() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for nats connection: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}
