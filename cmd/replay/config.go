package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
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
	MetricsListen  string        `env:"REPLAY_METRICS_LISTEN"`  // host:port of /metrics and /healthz; empty: none
	PushgatewayURL string        `env:"REPLAY_PUSHGATEWAY_URL"` // a one-shot run pushes its metrics there at the end

	Log logging.Config

	// From the flags.
	Since   instant
	Until   instant
	Every   time.Duration // 0: one pass
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
	since := fs.String("since", "", "replay events created at or after this: an RFC 3339 time, or a duration back from now (72h, 30d), from each pass's start with --every; default six months ago, the history's horizon")
	until := fs.String("until", "", "replay events created at or before this: an RFC 3339 time or a duration back from now; default now")
	every := fs.String("every", "", "run a pass at once, then one every this long (15m, 1h; at least 1s) until SIGTERM; default one pass")
	fs.Func("action", "replay only this action (repeatable, or comma-separated); default all", func(s string) error {
		cfg.Actions = append(cfg.Actions, fields(s)...)
		return nil
	})
	fs.BoolVar(&cfg.DryRun, "dry-run", false, "report the gaps, publish nothing")
	fs.BoolVar(&cfg.JSON, "json", false, "print the summary as JSON on stdout")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: replay [--since T] [--until T] [--every D] [--action A]... [--dry-run] [--json]")
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
	cfg.Since, cfg.Until = instant{months: 6}, instant{}
	if *since != "" {
		if cfg.Since, err = parseInstant(*since); err != nil {
			errs = append(errs, fmt.Errorf("--since: %w", err))
		}
	}
	if *until != "" {
		if cfg.Until, err = parseInstant(*until); err != nil {
			errs = append(errs, fmt.Errorf("--until: %w", err))
		}
	}
	if *every != "" {
		if cfg.Every, err = duration(*every); err != nil {
			errs = append(errs, fmt.Errorf("--every: %w", err))
		} else if cfg.Every < time.Second {
			errs = append(errs, fmt.Errorf("--every %s: at least 1s", *every))
		}
	}
	if err := cfg.validate(now); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return config{}, fmt.Errorf("%w: %w", errUsage, err)
	}
	return cfg, nil
}

func (c config) validate(now time.Time) error {
	var errs []error
	if c.APIKey == "" {
		errs = append(errs, errors.New("AYRSHARE_API_KEY is not set: the replay needs the Ayrshare API key to read the webhook history"))
	}
	if c.Stream == "" {
		errs = append(errs, errors.New("NATS_STREAM is empty"))
	}
	if since, until := c.window(now); !since.Before(until) {
		errs = append(errs, fmt.Errorf("--since %s is not before --until %s", since.Format(time.RFC3339), until.Format(time.RFC3339)))
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			errs = append(errs, fmt.Errorf("REPLAY_METRICS_LISTEN=%q: want host:port or :port: %w", c.MetricsListen, err))
		}
	}
	if c.PushgatewayURL != "" {
		if u, err := url.Parse(c.PushgatewayURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("REPLAY_PUSHGATEWAY_URL=%q: want http(s)://host[:port]", c.PushgatewayURL))
		}
		if c.Every > 0 {
			errs = append(errs, errors.New("REPLAY_PUSHGATEWAY_URL is for a one-shot run: a continuous one (--every) is scraped at REPLAY_METRICS_LISTEN"))
		}
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

// window returns the pass window that starts at now.
func (c config) window(now time.Time) (since, until time.Time) {
	return c.Since.at(now), c.Until.at(now)
}

// instant is a flag's time: fixed, or a span back from the start of each pass.
type instant struct {
	abs    time.Time
	back   time.Duration
	months int // back this many calendar months as well
}

func (i instant) at(now time.Time) time.Time {
	if !i.abs.IsZero() {
		return i.abs
	}
	return now.AddDate(0, -i.months, 0).Add(-i.back)
}

// parseInstant reads an RFC 3339 time, or a duration back from now.
func parseInstant(s string) (instant, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return instant{abs: t}, nil
	}
	d, err := duration(s)
	if err != nil {
		return instant{}, fmt.Errorf("%q: want an RFC 3339 time or a duration such as 72h or 30d", s)
	}
	if d < 0 {
		return instant{}, fmt.Errorf("%q: a duration back from now must not be negative", s)
	}
	return instant{back: d}, nil
}

// duration reads Go syntax (90m, 72h) or whole days (30d).
func duration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, fmt.Errorf("%q: want a duration such as 15m, 72h or 30d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q: want a duration such as 15m, 72h or 30d", s)
	}
	return d, nil
}
