package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
	"github.com/schollz/progressbar/v3"

	"github.com/ayrbridge/ayrbridge/replay"
)

// writeSummary prints the summary as a table per action, or as JSON.
func writeSummary(w io.Writer, sum replay.Summary, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(sum)
	}
	var b strings.Builder
	mode := ""
	if sum.DryRun {
		mode = " (dry run: nothing published)"
	}
	if sum.Interrupted {
		mode += " (interrupted: run again to resume)"
	}
	fmt.Fprintf(&b, "replay of %s .. %s, %d profile(s), %d ids read from the stream, %.1fs%s\n",
		sum.Since.Format(time.RFC3339), sum.Until.Format(time.RFC3339), sum.Profiles, sum.StoredIDs, sum.Seconds, mode)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "action\tin history\tin stream\tmissing\tpublished\tfailed\toutside window\t")
	row := func(name string, c replay.Counts) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n", name, c.InHistory, c.InStream, c.Missing, c.Published, c.Failed, c.OutsideWindow)
	}
	actions := make([]string, 0, len(sum.Actions))
	for a := range sum.Actions {
		actions = append(actions, a)
	}
	slices.Sort(actions)
	for _, a := range actions {
		row(a, sum.Actions[a])
	}
	row("total", sum.Total)
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, e := range sum.Errors {
		fmt.Fprintf(&b, "error: %s\n", e)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// showProgress reports the replay's progress until the returned function is called: a bar on
// cfg.progress when it is a terminal, else a log line every cfg.ProgressEvery.
func showProgress(rep *replay.Replayer, cfg config, log zerolog.Logger) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	every := cfg.ProgressEvery
	var bar *progressbar.ProgressBar
	if cfg.progress != nil {
		every = 200 * time.Millisecond
		bar = progressbar.NewOptions64(-1,
			progressbar.OptionSetWriter(cfg.progress),
			progressbar.OptionSetDescription("connecting"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("events"),
			progressbar.OptionSpinnerType(14),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
			// Our ticker redraws it; the bar's own spinner goroutine reads its state unlocked.
			progressbar.OptionSetSpinnerChangeInterval(0),
		)
	}
	go func() {
		defer close(finished)
		counting := false
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				if bar != nil {
					_ = bar.Finish()
				}
				return
			case <-t.C:
			}
			p := rep.Progress()
			if bar == nil {
				log.Info().Str("phase", p.Phase).Int64("stored_ids", p.StoredIDs).Int64("read", p.Read).
					Int64("in_stream", p.InStream).Int64("missing", p.Missing).Int64("published", p.Published).
					Int64("failed", p.Failed).Msg("replay progress")
				continue
			}
			if p.Phase == "stream" {
				bar.Describe("reading the ids the stream holds")
				_ = bar.Set64(p.StoredIDs)
				continue
			}
			if !counting { // the count and rate start again for the history
				counting = true
				bar.Reset()
			}
			bar.Describe(fmt.Sprintf("%s: in stream %d, published %d, failed %d", p.Phase, p.InStream, p.Published, p.Failed))
			_ = bar.Set64(p.Read)
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}
