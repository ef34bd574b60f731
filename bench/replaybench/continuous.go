package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"time"

	"github.com/ayrbridge/ayrbridge/internal/metricstest"
	"github.com/ayrbridge/ayrbridge/internal/proc"
)

// continuousBench runs the replay with --every 1s for o.passes passes against the history
// and a half-filled stream: the first pass fills the gap, the others find nothing. It samples
// the job's resident set at the end of each pass, so a leak shows as growth from pass to pass.
func continuousBench(ctx context.Context, o options, bin, histAddr string, st *stream) (bool, error) {
	if o.passes < 4 {
		return false, fmt.Errorf("-passes %d: at least 4, to compare the first half with the second", o.passes)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return false, err
	}
	metricsAddr := ln.Addr().String()
	ln.Close()
	cmd := exec.CommandContext(ctx, bin, "--every", "1s", "--since", "4320h")
	cmd.Env = append(os.Environ(),
		"AYRSHARE_API_KEY="+apiKey, "AYRSHARE_API_URL=http://"+histAddr, "AYRSHARE_PROFILE_KEYS=",
		"NATS_URL="+st.url, "NATS_STREAM=AYRSHARE", "LOG_LEVEL=warn", "REPLAY_METRICS_LISTEN="+metricsAddr)
	cmd.Env = append(cmd.Env, o.env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return false, err
	}
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid

	var rss []int64 // kB at the end of each pass
	var last map[string]float64
	began := time.Now()
	for len(rss) < o.passes {
		m, err := metricstest.Scrape(ctx, "http://"+metricsAddr+"/metrics")
		if err != nil {
			if time.Since(began) > 30*time.Second {
				return false, fmt.Errorf("metrics: %w", err)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		passes := int(m[`ayrbridge_replay_passes_total{result="ok"}`] + m[`ayrbridge_replay_passes_total{result="error"}`])
		for len(rss) < passes && len(rss) < o.passes {
			b, _ := proc.RSS(pid)
			rss = append(rss, b>>10)
			fmt.Printf("pass %d: RSS %.1f MB, %.1fs\n", len(rss), float64(b)/(1<<20), time.Since(began).Seconds())
		}
		last = m
		time.Sleep(20 * time.Millisecond)
	}
	peak, _ := proc.PeakRSS(pid)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return false, err
	}
	waitErr := cmd.Wait()

	msgs, distinct, missing, err := st.verify(ctx, newGen(o.n, time.Now()))
	if err != nil {
		return false, err
	}
	want := float64(o.n / 2)
	// The resident set swings by a fifth from pass to pass with the collector's rhythm, so
	// compare the highest of each half: a leak lifts the second.
	early, late := slices.Max(rss[:len(rss)/2]), slices.Max(rss[len(rss)/2:])
	fmt.Printf("\n%d passes in %s; peak RSS %.1f MB; highest RSS at a pass end: %.1f MB in passes 1-%d, %.1f MB in passes %d-%d\n",
		len(rss), time.Since(began).Round(time.Second), float64(peak)/(1<<20), float64(early)/1024, len(rss)/2, float64(late)/1024, len(rss)/2+1, len(rss))
	fmt.Printf("passes ok %v, error %v; missing %v, published %v, failed %v; history requests %v (200: %v)\n",
		last[`ayrbridge_replay_passes_total{result="ok"}`], last[`ayrbridge_replay_passes_total{result="error"}`],
		metricstest.Sum(last, "ayrbridge_replay_missing_events_total"), metricstest.Sum(last, "ayrbridge_replay_published_events_total"),
		metricstest.Sum(last, "ayrbridge_replay_failed_events_total"), metricstest.Sum(last, "ayrbridge_replay_history_requests_total"),
		last[`ayrbridge_replay_history_requests_total{code="200"}`])
	fmt.Printf("stream after: %d messages, %d distinct ids, %d expected ids missing\n", msgs, distinct, missing)
	checks := []check{
		{"exit 0 after SIGTERM", waitErr == nil},
		{fmt.Sprintf("missing events counted once: %.0f", want), metricstest.Sum(last, "ayrbridge_replay_missing_events_total") == want},
		{fmt.Sprintf("published the %.0f missing events, none failed", want), metricstest.Sum(last, "ayrbridge_replay_published_events_total") == want && metricstest.Sum(last, "ayrbridge_replay_failed_events_total") == 0},
		{fmt.Sprintf("stream holds %d distinct ids, each once", o.n), msgs == o.n && distinct == o.n && missing == 0},
		{fmt.Sprintf("memory flat: the second half's highest RSS within 10%% of the first half's (%.1f / %.1f MB)", float64(late)/1024, float64(early)/1024), float64(late) <= 1.1*float64(early)},
	}
	return report(checks), nil
}
