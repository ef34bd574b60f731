// Command replay publishes the events of Ayrshare's webhook history (GET /api/hook/history, up
// to six months) that the bridge's NATS stream lacks, each exactly as the bridge would have
// published the delivery plus ce-replayed: true. It never stores an event twice, whatever the
// stream's duplicate window, so it can be stopped and run again at any time.
//
// Exit codes: 0 every event in the window is in the stream; 1 some could not be published or a
// history or NATS error stopped part of the run; 2 bad configuration; 130 interrupted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/term"

	"github.com/ayrbridge/ayrbridge/publish"
	"github.com/ayrbridge/ayrbridge/replay"
)

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitInterrupted = 130
)

// errEventsFailed means the run finished but some events are still not in the stream.
var errEventsFailed = errors.New("some events could not be published")

func main() {
	tuneGC()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills at once, should the clean stop hang
	}()
	var bar io.Writer
	if term.IsTerminal(int(os.Stderr.Fd())) {
		bar = os.Stderr
	}
	code := cli(ctx, os.Args[1:], nil, os.Stdout, os.Stderr, bar)
	stop()
	os.Exit(code)
}

// tuneGC trades memory the job can spare for CPU. Each event allocates a few kilobytes that
// die at once while what lives on (the id set, the publish window) is small, so the default
// GOGC=100 collects very often: a fifth of the CPU of a large replay. A soft limit keeps the
// peak under 200 MB; past about five million ids in the window the live heap exceeds it and
// the GC works harder instead. GOGC and GOMEMLIMIT in the environment win.
func tuneGC() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(400)
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		debug.SetMemoryLimit(192 << 20)
	}
}

// cli is main without the process: it loads the configuration from args and environ (the
// process environment when nil), builds the logger, runs, and returns the exit code. bar, when
// not nil, is the terminal to draw the progress bar on.
func cli(ctx context.Context, args []string, environ map[string]string, stdout, stderr, bar io.Writer) int {
	cfg, err := loadConfig(args, environ, time.Now(), stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "replay:", err)
		return exitUsage
	}
	cfg.progress = bar
	log := cfg.Log.New(stderr, "replay")
	err = run(ctx, cfg, log, stdout)
	switch {
	case err == nil:
		return exitOK
	case ctx.Err() != nil:
		log.Warn().Err(err).Msg("replay interrupted: run it again to resume")
		return exitInterrupted
	default:
		log.Error().Err(err).Msg("replay incomplete: run it again once the cause is fixed")
		return exitFailed
	}
}

// run replays the window of cfg, once or every cfg.Every, and writes the summary of a one-shot
// run to stdout. A one-shot run returns an error when any event of the window could not be
// brought into the stream; a continuous one returns nil once ctx ends.
func run(ctx context.Context, cfg config, log zerolog.Logger, stdout io.Writer) (err error) {
	started := time.Now()
	since, until := cfg.window(started)
	profiles := replay.Profiles(cfg.profileKeys())
	labels := make([]string, len(profiles))
	for i, p := range profiles {
		labels[i] = p.Label
	}
	log.Info().Str("api", cfg.APIURL).Strs("profiles", labels).Str("stream", cfg.Stream).
		Dict("nats", cfg.NATS.LogDict()).Time("since", since).Time("until", until).Dur("every", cfg.Every).
		Strs("actions", cfg.Actions).Bool("dry_run", cfg.DryRun).Msg("replay starting")

	reg := prometheus.NewRegistry()
	metrics, err := replay.NewMetrics(reg, started)
	if err != nil {
		return err
	}
	metrics.SetSchedule(len(profiles), cfg.Every)
	if cfg.MetricsListen != "" {
		stop, err := serveMetrics(cfg.MetricsListen, reg, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	if cfg.PushgatewayURL != "" {
		defer func() { pushMetrics(ctx, cfg.PushgatewayURL, reg, err == nil, log) }()
	}

	connCfg := cfg.NATS
	connCfg.Name = "ayrbridge-replay"
	nc, err := publish.Connect(connCfg, nil, log)
	if err != nil {
		return err
	}
	defer func() {
		nc.SetDisconnectErrHandler(nil) // a close of our own is no disconnect to warn about
		nc.Close()
	}()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	// Connect keeps retrying in the background, as the bridge wants; a batch job rather fails,
	// where a continuous replay counts the passes that fail meanwhile.
	if cfg.Every == 0 {
		if err := waitNATS(ctx, cfg, nc, js); err != nil {
			return err
		}
	}

	var sink replay.Sink
	if !cfg.DryRun {
		pub, err := publish.NewPublisher(nc, cfg.Stream, publish.WithWindow(cfg.PublishWindow), publish.WithLogger(log))
		if err != nil {
			return err
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = pub.Close(cctx) // the replay flushed it; this only stops its goroutine
		}()
		sink = pub
	}
	client, err := replay.NewClient(cfg.APIURL, cfg.APIKey,
		replay.WithRequestTimeout(cfg.RequestTimeout),
		replay.WithRetries(cfg.MaxRetries),
		replay.WithBackoff(cfg.Backoff, cfg.MaxBackoff),
		replay.WithClientMetrics(metrics),
		replay.WithClientLogger(log))
	if err != nil {
		return err
	}
	stored := func(ctx context.Context, since time.Time, fn func(string)) (int, error) {
		// A continuous pass that finds the connection down gives it the connect timeout to
		// come back rather than failing at once, as at a start next to a NATS still starting.
		if err := waitConnected(ctx, cfg, nc); err != nil {
			return 0, err
		}
		n, err := publish.StoredIDs(ctx, js, cfg.Stream, since, fn)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			err = fmt.Errorf("%w (the bridge creates it when it starts: is NATS_STREAM right?)", err)
		}
		return n, err
	}
	rep, err := replay.New(client, stored, sink, replay.WithLogger(log), replay.WithStreamMargin(cfg.StreamMargin),
		replay.WithMetrics(metrics))
	if err != nil {
		return err
	}
	job := replay.Job{Profiles: profiles, Since: since, Until: until, Actions: cfg.Actions, DryRun: cfg.DryRun}
	if cfg.Every > 0 {
		return continuous(ctx, rep, job, cfg, log)
	}

	stopProgress := showProgress(rep, cfg, log)
	sum, runErr := rep.Run(ctx, job)
	stopProgress()
	if err := writeSummary(stdout, sum, cfg.JSON); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("write summary: %w", err))
	}
	logSummary(log.Info(), sum, "replay finished")
	if runErr != nil {
		return runErr
	}
	if t := sum.Total; t.Failed > 0 {
		return fmt.Errorf("%w: %d of %d", errEventsFailed, t.Failed, t.InHistory)
	}
	return nil
}

// waitNATS waits for the connection and checks the stream, so that a one-shot run fails before
// it asks Ayrshare for anything.
func waitNATS(ctx context.Context, cfg config, nc *nats.Conn, js jetstream.JetStream) error {
	if err := waitConnected(ctx, cfg, nc); err != nil {
		return err
	}
	if _, err := js.Stream(ctx, cfg.Stream); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("stream %s not found: the bridge creates it when it starts (is NATS_STREAM right?): %w", cfg.Stream, err)
		}
		return fmt.Errorf("stream %s: %w", cfg.Stream, err)
	}
	return nil
}

// waitConnected waits up to cfg.ConnectTimeout for nc to be connected.
func waitConnected(ctx context.Context, cfg config, nc *nats.Conn) error {
	wctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	if err := publish.WaitConnected(wctx, nc); err != nil {
		return fmt.Errorf("nats not reachable within %s (last error: %v): %w", cfg.ConnectTimeout, nc.LastError(), err)
	}
	return nil
}

// continuous runs a pass now and then every cfg.Every until ctx ends, and logs each.
func continuous(ctx context.Context, rep *replay.Replayer, job replay.Job, cfg config, log zerolog.Logger) error {
	sched := replay.Schedule{Every: cfg.Every, Window: cfg.window}
	cfg.progress = nil // a bar would never finish: log lines during long passes
	stopProgress := showProgress(rep, cfg, log)
	defer stopProgress()
	n := 0
	return rep.RunEvery(ctx, job, sched, func(sum replay.Summary, err error) {
		n++
		ev := log.Info()
		switch {
		case err == nil && sum.Total.Failed == 0:
		case ctx.Err() != nil:
			ev = log.Warn().Err(err) // stopping: the next start goes on from the stream
		default:
			ev = log.Error().Err(err)
		}
		if len(sum.Refused) > 0 {
			ev = ev.Strs("stopped_profiles", sum.Refused)
		}
		logSummary(ev.Int("pass", n), sum, "replay pass finished")
	})
}

// logSummary finishes ev with a summary's counts.
func logSummary(ev *zerolog.Event, sum replay.Summary, msg string) {
	t := sum.Total
	ev.Time("since", sum.Since).Time("until", sum.Until).
		Int64("in_history", t.InHistory).Int64("in_stream", t.InStream).Int64("missing", t.Missing).
		Int64("newly_missing", t.NewlyMissing).Int64("published", t.Published).Int64("failed", t.Failed).
		Int64("outside_window", t.OutsideWindow).Int("stored_ids", sum.StoredIDs).
		Float64("seconds", sum.Seconds).Bool("interrupted", sum.Interrupted).Msg(msg)
}
