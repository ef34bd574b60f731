package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/ayrbridge/ayrbridge/internal/envconfig"
	"github.com/ayrbridge/ayrbridge/internal/logging"
	"github.com/ayrbridge/ayrbridge/publish"
)

// defaultNATSURL is the bridge's embedded server.
const defaultNATSURL = "nats://127.0.0.1:4222"

// config is every setting of the replay: the environment, then the flags.
type config struct {
	APIKey      string `env:"AYRSHARE_API_KEY"` // secret: never logged
	APIURL      string `env:"AYRSHARE_API_URL" envDefault:"https://api.ayrshare.com"`
	ProfileKeys string `env:"AYRSHARE_PROFILE_KEYS"` // comma-separated; secrets: logged redacted

	NATS   publish.ConnConfig
	Stream string `env:"NATS_STREAM" envDefault:"AYRSHARE"`

	RequestTimeout time.Duration `env:"REPLAY_REQUEST_TIMEOUT" envDefault:"60s"`
	MaxRetries     int           `env:"REPLAY_MAX_RETRIES" envDefault:"6"`
	Backoff        time.Duration `env:"REPLAY_BACKOFF" envDefault:"1s"`
	MaxBackoff     time.Duration `env:"REPLAY_MAX_BACKOFF" envDefault:"1m"`
	PublishWindow  int           `env:"REPLAY_PUBLISH_WINDOW" envDefault:"4096"`
	StreamMargin   time.Duration `env:"REPLAY_STREAM_MARGIN" envDefault:"1h"`
	ConnectTimeout time.Duration `env:"REPLAY_NATS_CONNECT_TIMEOUT" envDefault:"10s"`
	ProgressEvery  time.Duration `env:"REPLAY_PROGRESS_INTERVAL" envDefault:"10s"`

	Log logging.Config

	// From the flags.
	Since   time.Time
	Until   time.Time
	Actions []string
	DryRun  bool
	JSON    bool

	progress io.Writer // a terminal to draw the progress bar on; nil means log lines
}

// errUsage marks a configuration the replay cannot start with (exit code 2).
var errUsage = errors.New("usage")

// loadConfig parses environ (the process environment when nil) and args, with now as the
// reference of relative times, and validates the result. -h gives flag.ErrHelp.
func loadConfig(args []string, environ map[string]string, now time.Time, stderr io.Writer) (config, error) {
	var cfg config
	if err := envconfig.Load(&cfg, environ); err != nil {
		return config{}, fmt.Errorf("%w: %w", errUsage, err)
	}
	cfg.NATS = cfg.NATS.WithDefaultURL(defaultNATSURL)

	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	since := fs.String("since", "", "replay events created at or after this: an RFC 3339 time, or a duration back from now (72h, 30d); default six months ago, the history's horizon")
	until := fs.String("until", "", "replay events created at or before this: an RFC 3339 time or a duration back from now; default now")
	fs.Func("action", "replay only this action (repeatable, or comma-separated); default all", func(s string) error {
		cfg.Actions = append(cfg.Actions, fields(s)...)
		return nil
	})
	fs.BoolVar(&cfg.DryRun, "dry-run", false, "report the gaps, publish nothing")
	fs.BoolVar(&cfg.JSON, "json", false, "print the summary as JSON on stdout")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: replay [--since T] [--until T] [--action A]... [--dry-run] [--json]")
		fmt.Fprintln(fs.Output(), "Publishes the events of Ayrshare's webhook history that the NATS stream lacks.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config{}, err
		}
		return config{}, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}

	var errs []error
	var err error
	cfg.Since, cfg.Until = now.AddDate(0, -6, 0), now
	if *since != "" {
		if cfg.Since, err = when(*since, now); err != nil {
			errs = append(errs, fmt.Errorf("--since: %w", err))
		}
	}
	if *until != "" {
		if cfg.Until, err = when(*until, now); err != nil {
			errs = append(errs, fmt.Errorf("--until: %w", err))
		}
	}
	if err := cfg.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return config{}, fmt.Errorf("%w: %w", errUsage, err)
	}
	return cfg, nil
}

func (c config) validate() error {
	var errs []error
	if c.APIKey == "" {
		errs = append(errs, errors.New("AYRSHARE_API_KEY is not set: the replay needs the Ayrshare API key to read the webhook history"))
	}
	if c.Stream == "" {
		errs = append(errs, errors.New("NATS_STREAM is empty"))
	}
	if !c.Since.IsZero() && !c.Until.IsZero() && !c.Since.Before(c.Until) {
		errs = append(errs, fmt.Errorf("--since %s is not before --until %s", c.Since.Format(time.RFC3339), c.Until.Format(time.RFC3339)))
	}
	for _, v := range []struct {
		name string
		d    time.Duration
	}{
		{"REPLAY_REQUEST_TIMEOUT", c.RequestTimeout}, {"REPLAY_BACKOFF", c.Backoff},
		{"REPLAY_NATS_CONNECT_TIMEOUT", c.ConnectTimeout}, {"REPLAY_PROGRESS_INTERVAL", c.ProgressEvery},
	} {
		if v.d <= 0 {
			errs = append(errs, fmt.Errorf("%s=%s: must be positive", v.name, v.d))
		}
	}
	if c.MaxBackoff < c.Backoff {
		errs = append(errs, fmt.Errorf("REPLAY_MAX_BACKOFF=%s is below REPLAY_BACKOFF=%s", c.MaxBackoff, c.Backoff))
	}
	if c.MaxRetries < 0 {
		errs = append(errs, fmt.Errorf("REPLAY_MAX_RETRIES=%d: must not be negative", c.MaxRetries))
	}
	if c.PublishWindow < 1 {
		errs = append(errs, fmt.Errorf("REPLAY_PUBLISH_WINDOW=%d: must be positive", c.PublishWindow))
	}
	if c.StreamMargin < 0 {
		errs = append(errs, fmt.Errorf("REPLAY_STREAM_MARGIN=%s: must not be negative", c.StreamMargin))
	}
	if err := c.Log.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// profileKeys returns AYRSHARE_PROFILE_KEYS as a list; keys never hold commas or spaces.
func (c config) profileKeys() []string { return fields(c.ProfileKeys) }

func fields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

// when reads an RFC 3339 time, or a duration back from now: Go syntax (90m, 72h) or whole days (30d).
func when(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time or a duration such as 72h or 30d", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time or a duration such as 72h or 30d", s)
		}
	}
	if d < 0 {
		return time.Time{}, fmt.Errorf("%q: a duration back from now must not be negative", s)
	}
	return now.Add(-d), nil
}
