// Command replaybench measures the replay job at scale: a local fake Ayrshare serves a history
// of n events (generated on the fly while it streams), a file-storage stream already holds
// half of them, and the built cmd/replay binary fills the gap as a subprocess, so its peak RSS
// is its own. It then checks that the stream holds each of the n events exactly once and that a
// second run publishes nothing, and prints PASS or FAIL against the targets.
//
//	go run ./bench/replaybench            # 1,000,000 events
//	go run ./bench/replaybench -n 100000  # a quicker run
//	go run ./bench/replaybench -n 100000 -passes 25  # the continuous replay: memory over passes
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ayrbridge/ayrbridge/internal/proc"
	"github.com/ayrbridge/ayrbridge/publish"
	"github.com/ayrbridge/ayrbridge/replay"
	"github.com/ayrbridge/ayrbridge/schema"
)

const apiKey = "bench-api-key"

type options struct {
	n        int
	runs     int
	bin      string
	dir      string
	window   int
	minRate  float64
	maxRSSMB float64
	serve    bool
	passes   int
	env      []string
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 1_000_000, "events in the history; the stream starts with every second one")
	flag.IntVar(&o.runs, "runs", 1, "repeat the first (gap-filling) run this many times on fresh streams and keep the best rate")
	flag.StringVar(&o.bin, "bin", "", "replay binary to measure (default: go build ./cmd/replay)")
	flag.StringVar(&o.dir, "dir", "", "directory for the stream store and the binary (default: a temporary one, removed)")
	flag.IntVar(&o.window, "window", 0, "REPLAY_PUBLISH_WINDOW for the job (default: the job's own)")
	flag.Float64Var(&o.minRate, "target-rate", 50_000, "events per second the first run must reach")
	flag.Float64Var(&o.maxRSSMB, "target-rss", 300, "peak RSS in MB the job must stay under")
	flag.Func("env", "extra KEY=VALUE for the job's environment (repeatable), e.g. -env GOGC=100", func(kv string) error {
		if !strings.Contains(kv, "=") {
			return errors.New("want KEY=VALUE")
		}
		o.env = append(o.env, kv)
		return nil
	})
	flag.IntVar(&o.passes, "passes", 0, "run the replay continuously (--every 1s) for this many passes instead, and report its memory pass by pass")
	flag.BoolVar(&o.serve, "serve", false, "set up the history and the half-filled stream, print the environment for the job, and wait for Ctrl-C (for profiling)")
	flag.Parse()
	ok, err := bench(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "replaybench:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

// result is one run of the job.
type result struct {
	wall    time.Duration
	rssMB   float64
	summary replay.Summary
}

func bench(ctx context.Context, o options) (bool, error) {
	dir := o.dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "replaybench-"); err != nil {
			return false, err
		}
		defer os.RemoveAll(dir)
	}
	bin, err := buildReplay(ctx, o.bin, dir)
	if err != nil {
		return false, err
	}
	g := newGen(o.n, time.Now())
	hist, err := serveHistory(g)
	if err != nil {
		return false, err
	}
	defer hist.Close()
	fmt.Printf("history: %d events at http://%s, %d actions; replay binary %s\n", o.n, hist.Addr, len(actions), bin)

	var best result
	var peakRSS float64
	var last *stream
	for run := 1; run <= max(o.runs, 1); run++ {
		if last != nil {
			last.close()
		}
		st, err := startStream(ctx, filepath.Join(dir, fmt.Sprint("store", run)))
		if err != nil {
			return false, err
		}
		last = st
		began := time.Now()
		if err := st.preload(ctx, g); err != nil {
			st.close()
			return false, err
		}
		fmt.Printf("run %d: stream preloaded with %d events (every second one) in %s\n", run, (o.n+1)/2, time.Since(began).Round(time.Millisecond))
		if o.serve {
			fmt.Printf("AYRSHARE_API_KEY=%s AYRSHARE_API_URL=http://%s NATS_URL=%s %s --since 4320h\n", apiKey, hist.Addr, st.url, bin)
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, os.Interrupt)
			<-sig
			st.close()
			return true, nil
		}
		if o.passes > 0 {
			defer st.close()
			return continuousBench(ctx, o, bin, hist.Addr, st)
		}
		res, err := runReplay(ctx, bin, hist.Addr, st.url, o.window, o.env)
		if err != nil {
			st.close()
			return false, err
		}
		t := res.summary.Total
		fmt.Printf("run %d: %s, %.0f events/s, peak RSS %.1f MB; in history %d, in stream %d, published %d, failed %d\n",
			run, res.wall.Round(time.Millisecond), rate(o.n, res.wall), res.rssMB, t.InHistory, t.InStream, t.Published, t.Failed)
		if best.wall == 0 || res.wall < best.wall {
			best = res
		}
		peakRSS = max(peakRSS, res.rssMB) // the worst memory goes with the best time
	}
	defer last.close()

	msgs, distinct, missing, err := last.verify(ctx, g)
	if err != nil {
		return false, err
	}
	again, err := runReplay(ctx, bin, hist.Addr, last.url, o.window, o.env)
	if err != nil {
		return false, err
	}

	first := best.summary.Total
	bestRate := rate(o.n, best.wall)
	fmt.Printf("\nfirst run (best of %d): %d events in %s = %.0f events/s (job's own timer: %.2fs); published %d, in stream %d, failed %d\n",
		max(o.runs, 1), o.n, best.wall.Round(time.Millisecond), bestRate, best.summary.Seconds, first.Published, first.InStream, first.Failed)
	fmt.Printf("peak RSS of the job: %.1f MB over the first runs (second run %.1f MB)\n", peakRSS, again.rssMB)
	fmt.Printf("stream after: %d messages, %d distinct ids, %d expected ids missing\n", msgs, distinct, missing)
	fmt.Printf("second run: %s, published %d, in stream %d\n", again.wall.Round(time.Millisecond), again.summary.Total.Published, again.summary.Total.InStream)

	want := int64(o.n) / 2 // the odd indexes were missing
	checks := []check{
		{fmt.Sprintf("rate >= %.0f events/s (%.0f)", o.minRate, bestRate), bestRate >= o.minRate},
		{fmt.Sprintf("peak RSS < %.0f MB (%.1f)", o.maxRSSMB, max(peakRSS, again.rssMB)), max(peakRSS, again.rssMB) < o.maxRSSMB},
		{fmt.Sprintf("first run published the %d missing events, none failed", want), first.Published == want && first.Failed == 0 && first.InStream == int64(o.n)-want},
		{fmt.Sprintf("stream holds %d distinct ids, each once", o.n), msgs == o.n && distinct == o.n && missing == 0},
		{"second run published nothing", again.summary.Total.Published == 0 && again.summary.Total.InStream == int64(o.n) && again.summary.Total.Failed == 0},
	}
	return report(checks), nil
}

// check is one target of a benchmark and whether the run met it.
type check struct {
	name string
	ok   bool
}

// report prints PASS or FAIL for each check and returns whether all passed.
func report(checks []check) bool {
	all := true
	for _, c := range checks {
		verdict := "PASS"
		if !c.ok {
			verdict, all = "FAIL", false
		}
		fmt.Printf("%s %s\n", verdict, c.name)
	}
	return all
}

func rate(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }

// buildReplay returns bin, or builds cmd/replay into dir.
func buildReplay(ctx context.Context, bin, dir string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	bin = filepath.Join(dir, "replay")
	if err := proc.Build(ctx, bin, "./cmd/replay"); err != nil {
		return "", fmt.Errorf("build cmd/replay: %w", err)
	}
	return bin, nil
}

// runReplay runs the job once and measures its wall time and peak RSS.
func runReplay(ctx context.Context, bin, histAddr, natsURL string, window int, env []string) (result, error) {
	cmd := exec.CommandContext(ctx, bin, "--json", "--since", "4320h")
	cmd.Env = append(os.Environ(),
		"AYRSHARE_API_KEY="+apiKey,
		"AYRSHARE_API_URL=http://"+histAddr,
		"AYRSHARE_PROFILE_KEYS=",
		"NATS_URL="+natsURL,
		"NATS_STREAM=AYRSHARE",
		"LOG_LEVEL=warn",
	)
	if window > 0 {
		cmd.Env = append(cmd.Env, "REPLAY_PUBLISH_WINDOW="+strconv.Itoa(window))
	}
	cmd.Env = append(cmd.Env, env...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return result{}, fmt.Errorf("replay: %w", err)
	}
	peak := make(chan int64, 1)
	done := make(chan struct{})
	go func() { peak <- samplePeakRSS(cmd.Process.Pid, done) }()
	err := cmd.Wait()
	wall := time.Since(began)
	close(done)
	if err != nil {
		return result{}, fmt.Errorf("replay: %w", err)
	}
	res := result{wall: wall, rssMB: float64(<-peak) / 1024}
	if err := json.Unmarshal(stdout.Bytes(), &res.summary); err != nil {
		return result{}, fmt.Errorf("replay summary: %w: %s", err, stdout.String())
	}
	return res, nil
}

// samplePeakRSS returns the child's VmHWM in kB, read from /proc every 10ms until done (it
// only grows, so the last sample is the peak but for the last few milliseconds). The
// rusage of a child is no use here: Go starts children with vfork, and Linux counts the
// parent's resident set, this whole benchmark with its nats-server, as the child's maximum.
func samplePeakRSS(pid int, done <-chan struct{}) int64 {
	var peak int64
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if b, err := proc.PeakRSS(pid); err == nil {
			peak = max(peak, b>>10)
		}
		select {
		case <-done:
			return peak
		case <-t.C:
		}
	}
}

// serveHistory starts the fake history endpoint: it streams the events grouped by action,
// generating each payload as it writes it.
func serveHistory(g gen) (*http.Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	// The whole response is rendered once, before any timing: a real Ayrshare spends none of
	// this machine's CPU on it, and generating it during the run would.
	var full bytes.Buffer
	writeHistory(&full, g, "")
	srv := &http.Server{Addr: ln.Addr().String(), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != replay.HistoryPath || r.Header.Get("Authorization") != "Bearer "+apiKey {
			http.Error(w, `{"status":"error","message":"API Key not valid"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if only := r.URL.Query().Get("action"); only != "" {
			bw := bufio.NewWriterSize(w, 256<<10)
			writeHistory(bw, g, only)
			bw.Flush()
			return
		}
		_, _ = w.Write(full.Bytes())
	})}
	go srv.Serve(ln)
	return srv, nil
}

// writeHistory writes the history response of g, or of one action when only is set.
func writeHistory(w interface {
	io.Writer
	io.ByteWriter
	io.StringWriter
}, g gen, only string) {
	buf := make([]byte, 0, 4096)
	_ = w.WriteByte('{')
	first := true
	for k, action := range actions {
		if only != "" && only != action {
			continue
		}
		if !first {
			_ = w.WriteByte(',')
		}
		first = false
		_, _ = w.WriteString(`"` + action + `":[`)
		for i := k; i < g.n; i += len(actions) {
			if i != k {
				_ = w.WriteByte(',')
			}
			buf = g.appendEvent(buf[:0], i)
			if _, err := w.Write(buf); err != nil {
				return // the client went away
			}
		}
		_ = w.WriteByte(']')
	}
	_ = w.WriteByte('}')
}

// stream is an in-process nats-server with a file-storage stream like the bridge's.
type stream struct {
	url   string
	close func()
	nc    *nats.Conn
	js    jetstream.JetStream
}

func startStream(ctx context.Context, dir string) (*stream, error) {
	ns, err := publish.StartEmbedded(publish.EmbeddedConfig{Listen: "127.0.0.1:0", StoreDir: dir}, zerolog.Nop())
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		ns.Shutdown()
		return nil, err
	}
	st := &stream{url: ns.ClientURL(), nc: nc, close: func() {
		nc.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
		os.RemoveAll(dir)
	}}
	if st.js, err = jetstream.New(nc); err != nil {
		st.close()
		return nil, err
	}
	_, err = publish.EnsureStream(ctx, st.js, publish.StreamConfig{
		Name: "AYRSHARE", Subjects: []string{schema.StreamSubjects}, Replicas: 1, DedupWindow: 24 * time.Hour,
	})
	if err != nil {
		st.close()
		return nil, err
	}
	return st, nil
}

// preload stores every even-indexed event as the bridge would have on delivery.
func (st *stream) preload(ctx context.Context, g gen) error {
	pub, err := publish.NewPublisher(st.nc, "AYRSHARE", publish.WithWindow(8192))
	if err != nil {
		return err
	}
	var failed atomic.Pointer[error] // retried messages report from their own goroutines
	for i := 0; i < g.n; i += 2 {
		ev, err := schema.NewEvent(g.appendEvent(nil, i), schema.Meta{})
		if err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
		err = pub.PublishAsync(ctx, ev, func(err error) {
			if err != nil {
				failed.CompareAndSwap(nil, &err)
			}
		})
		if err != nil {
			return err
		}
	}
	if err := pub.Close(ctx); err != nil {
		return err
	}
	if err := failed.Load(); err != nil {
		return fmt.Errorf("preload: %w", *err)
	}
	return nil
}

// verify reads every id the stream holds and reports the messages, the distinct ids, and how
// many of the history's ids are absent.
func (st *stream) verify(ctx context.Context, g gen) (msgs, distinct, missing int, err error) {
	seen := make(map[string]struct{}, g.n)
	msgs, err = publish.StoredIDs(ctx, st.js, "AYRSHARE", time.Time{}, func(id string) { seen[id] = struct{}{} })
	if err != nil {
		return 0, 0, 0, err
	}
	for i := range g.n {
		if _, ok := seen[g.id(i)]; !ok {
			missing++
		}
	}
	if len(seen) > g.n {
		return msgs, len(seen), missing, errors.New("the stream holds ids the history does not have")
	}
	return msgs, len(seen), missing, nil
}
