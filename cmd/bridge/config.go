package main

import (
	"errors"
	"fmt"
	"time"

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

	Secrets       []string      `env:"AYRSHARE_WEBHOOK_SECRETS" envSeparator:","`
	TimestampSkew time.Duration `env:"AYRSHARE_SIGNATURE_MAX_SKEW" envDefault:"0s"`

	NATS        publish.ConnConfig
	Stream      string        `env:"NATS_STREAM" envDefault:"AYRSHARE"`
	Replicas    int           `env:"NATS_REPLICAS" envDefault:"1"`
	DedupWindow time.Duration `env:"NATS_DEDUP_WINDOW" envDefault:"24h"`
	MaxAge      time.Duration `env:"NATS_MAX_AGE" envDefault:"0s"`

	EmbeddedListen     string `env:"NATS_EMBEDDED_LISTEN" envDefault:"127.0.0.1:4222"`
	EmbeddedDir        string `env:"NATS_EMBEDDED_DIR" envDefault:"./data"`
	EmbeddedSyncAlways bool   `env:"NATS_EMBEDDED_SYNC_ALWAYS" envDefault:"false"`

	Log logging.Config
}

// loadConfig parses environ (the process environment when nil) and validates the result.
func loadConfig(environ map[string]string) (config, error) {
	var cfg config
	if err := envconfig.Load(&cfg, environ); err != nil {
		return config{}, fmt.Errorf("config: %w", err)
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
	if c.RetryAfter < time.Second {
		errs = append(errs, fmt.Errorf("BRIDGE_RETRY_AFTER=%s: must be at least 1s", c.RetryAfter))
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
	return errors.Join(errs...)
}

func (c config) embedded() bool { return len(c.NATS.URLs) == 0 }

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
