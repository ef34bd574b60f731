// Package logging builds the root zerolog logger every ayrbridge command starts with, from the
// LOG_FORMAT and LOG_LEVEL variables they all read.
package logging

import (
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"
)

// Config is how a command logs; the env tags name the variables (each main parses them).
type Config struct {
	Format string `env:"LOG_FORMAT" envDefault:"json"` // json, or console for people
	Level  string `env:"LOG_LEVEL" envDefault:"info"`  // trace, debug, info, warn, error
}

// Validate reports a format or level the logger would not understand.
func (c Config) Validate() error {
	if c.Format != "json" && c.Format != "console" {
		return fmt.Errorf("LOG_FORMAT=%q: want json or console", c.Format)
	}
	if _, err := zerolog.ParseLevel(c.Level); err != nil {
		return fmt.Errorf("LOG_LEVEL=%q: %w", c.Level, err)
	}
	return nil
}

// New returns a logger writing to w, with a timestamp and svc on every line. An unknown level
// means info, so a logger always comes out.
func (c Config) New(w io.Writer, svc string) zerolog.Logger {
	if c.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	level, err := zerolog.ParseLevel(c.Level)
	if err != nil || level == zerolog.NoLevel {
		level = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(level).With().Timestamp().Str("svc", svc).Logger()
}
