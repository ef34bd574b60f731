// Command run is ayrbridge's load benchmark: it builds the bridge, the naive baseline
// (bench/naive) and nats-server, then drives each in turn, A B A B, at several connection
// counts, and prints requests/s, latency, CPU per stored event, peak RSS and the ratios
// against the baseline, with PASS/FAIL lines for the targets.
//
//	go run ./bench/run                       # 3 rounds of 8 s at 8 and 64 connections
//	go run ./bench/run -out /tmp/results.md  # also write the tables as Markdown (paste into bench/RESULTS.md)
//	go run ./bench/run -before /tmp/before   # also drive a bridge built from an earlier commit, as "before"
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ayrbridge/ayrbridge/bench/internal/harness"
	"github.com/ayrbridge/ayrbridge/bench/load"
	"github.com/ayrbridge/ayrbridge/internal/proc"
)

type options struct {
	rounds   int
	duration time.Duration
	warmup   time.Duration
	conns    []int
	servers  []string
	out      string
	dir      string
	before   string // a bridge binary built from an earlier commit, driven as server "before"
	natsSync bool   // the external nats-server fsyncs before every ack (sync_interval: always)
}

func main() {
	var o options
	var conns, servers string
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each runs every server once per connection count")
	flag.DurationVar(&o.duration, "duration", 8*time.Second, "measured load per run")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each run")
	flag.StringVar(&conns, "conns", "8,64", "connection counts")
	flag.StringVar(&servers, "servers", "bridge,naive,embedded", "servers to drive: bridge (external nats-server), naive, embedded (bridge on its embedded server, durable by default), embedded-lazy (embedded with NATS_EMBEDDED_SYNC_ALWAYS=false), embedded-group (durable, the bridge fsyncing the store per group, NATS_EMBEDDED_FSYNC=group), edge (an edge bridge of the external server, counted at the hub), edge-lazy (an edge with NATS_EMBEDDED_SYNC_ALWAYS=false), edge-alone (an edge whose hub is away)")
	flag.BoolVar(&o.natsSync, "nats-sync", false, "run the external nats-server (and hub) with sync_interval: always, as deploy/nats/*.conf do")
	flag.StringVar(&o.out, "out", "", "also write the result tables as Markdown to this file")
	flag.StringVar(&o.dir, "dir", "bench/out", "build and data directory")
	flag.StringVar(&o.before, "before", "", "a bridge binary built from an earlier commit (go build -o /tmp/before ./cmd/bridge in a worktree), driven on the external nats-server as server \"before\"")
	flag.Parse()
	for _, c := range strings.Split(conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n <= 0 {
			fatal(fmt.Errorf("-conns %q: %v", conns, err))
		}
		o.conns = append(o.conns, n)
	}
	o.servers = strings.Split(servers, ",")
	if o.before != "" && !slices.Contains(o.servers, "before") {
		o.servers = append([]string{"before"}, o.servers...)
	}
	if slices.Contains(o.servers, "before") && o.before == "" {
		fatal(fmt.Errorf("server before needs -before BIN"))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

// sample is one measured run of one server.
type sample struct {
	server      string
	conns       int
	rps         float64
	p50, p99    time.Duration
	cpuPerEvent time.Duration // the HTTP process's user+sys CPU divided by events stored
	natsCPU     time.Duration // the external nats-server's CPU per event (0 when embedded)
	peakRSS     int64         // bytes
	ok, stored  int
	errors      int
	groups      float64 // publish groups the bridge committed during the run (0: not exported)
	grouped     float64 // events in those groups
}

func run(ctx context.Context, o options) error {
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return err
	}
	bins, err := harness.Build(ctx, o.dir, map[string]string{
		"bridge": "./cmd/bridge", "naive": "./bench/naive", "nats-server": "github.com/nats-io/nats-server/v2",
	})
	if err != nil {
		return err
	}
	fmt.Printf("machine: %s/%s, %d CPUs, %s; load: Go keep-alive generator in this process\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), harness.CPUModel())
	natsPort := harness.FreePort()
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	natsDir := filepath.Join(o.dir, "nats-store")
	_ = os.RemoveAll(natsDir)
	// The server is also the hub of the "edge" runs: a JetStream domain and a leaf port, which
	// change nothing for the other servers' clients.
	leafPort := harness.FreePort()
	conf := filepath.Join(o.dir, "nats-server.conf")
	sync := ""
	if o.natsSync {
		sync = ", sync_interval: always"
	}
	if err := os.WriteFile(conf, fmt.Appendf(nil, "leafnodes { listen: \"127.0.0.1:%d\" }\njetstream { domain: hub%s }\n", leafPort, sync), 0o644); err != nil {
		return err
	}
	natsProc, err := harness.Start(bins["nats-server"], nil, "-c", conf, "-js", "-sd", natsDir, "-a", "127.0.0.1", "-p", strconv.Itoa(natsPort), "-l", filepath.Join(o.dir, "nats-server.log"))
	if err != nil {
		return err
	}
	defer natsProc.Stop(harness.StopGrace)
	nc, js, err := harness.ConnectJS(ctx, natsURL, "")
	if err != nil {
		return err
	}
	defer nc.Close()
	// As the bridge creates it, so that it sends atomic batches; the naive baseline ignores that.
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "AYRSHARE", Description: "Ayrshare webhooks as CloudEvents (ayrbridge)", Subjects: []string{"ayrshare.>"},
		Storage: jetstream.FileStorage, Duplicates: 24 * time.Hour, AllowAtomicPublish: true,
	})
	if err != nil {
		return fmt.Errorf("create stream: %w", err)
	}

	var samples []sample
	for round := 1; round <= o.rounds; round++ {
		for _, conns := range o.conns {
			for i, srv := range o.servers {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				// Ids unique across servers: a purge keeps the stream's dedup window, so a server
				// reusing another's ids would get duplicate answers and store nothing.
				prefix := fmt.Sprintf("s%d%d%03d", i, round, conns)
				s, err := measure(ctx, o, bins, srv, conns, prefix, natsURL, leafPort, natsProc, stream)
				if err != nil {
					return fmt.Errorf("round %d, %s at %d connections: %w", round, srv, conns, err)
				}
				if srv == "edge" || srv == "edge-lazy" {
					if err := detachEdges(ctx, js); err != nil {
						return fmt.Errorf("detach the edge: %w", err)
					}
				}
				fmt.Printf("round %d  %-13s %3d conns: %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  cpu/event %6.1f µs  nats %6.1f µs  rss %5.1f MB  2xx %d = stored %d  errors %d\n",
					round, srv, conns, s.rps, ms(s.p50), ms(s.p99), us(s.cpuPerEvent), us(s.natsCPU), mb(s.peakRSS), s.ok, s.stored, s.errors)
				samples = append(samples, s)
			}
		}
	}
	report := summarize(o, samples)
	fmt.Print(report)
	if o.out != "" {
		return os.WriteFile(o.out, []byte(report), 0o644)
	}
	return nil
}

// measure starts one server, warms it up, measures a run and stops it again.
func measure(ctx context.Context, o options, bins map[string]string, srv string, conns int, prefix, natsURL string, leafPort int, natsProc *proc.Proc, stream jetstream.Stream) (sample, error) {
	httpPort := harness.FreePort()
	addr := fmt.Sprintf("127.0.0.1:%d", httpPort)
	var p *proc.Proc
	var err error
	countURL, countStream := natsURL, "AYRSHARE"
	external := true
	switch srv {
	case "bridge", "before":
		if err := stream.Purge(ctx); err != nil {
			return sample{}, err
		}
		bin := bins["bridge"]
		if srv == "before" {
			bin = o.before
		}
		// Batches where the server syncs always, as deploy/ sets them; never on a lazy server.
		p, err = harness.Start(bin, []string{"BRIDGE_LISTEN=" + addr, "NATS_URL=" + natsURL, "LOG_LEVEL=warn",
			"NATS_ATOMIC_BATCHES=" + strconv.FormatBool(o.natsSync)})
	case "naive":
		if err := stream.Purge(ctx); err != nil {
			return sample{}, err
		}
		p, err = harness.Start(bins["naive"], []string{"NAIVE_LISTEN=" + addr, "NATS_URL=" + natsURL})
	case "embedded", "embedded-lazy", "embedded-group":
		external = false
		np := harness.FreePort()
		countURL = fmt.Sprintf("nats://127.0.0.1:%d", np)
		dir := filepath.Join(o.dir, "embedded-store")
		_ = os.RemoveAll(dir)
		env := []string{"BRIDGE_LISTEN=" + addr, "NATS_EMBEDDED_LISTEN=" + fmt.Sprintf("127.0.0.1:%d", np), "NATS_EMBEDDED_DIR=" + dir, "LOG_LEVEL=warn"}
		switch srv {
		case "embedded-lazy":
			env = append(env, "NATS_EMBEDDED_SYNC_ALWAYS=false")
		case "embedded-group":
			env = append(env, "NATS_EMBEDDED_FSYNC=group")
		}
		p, err = harness.Start(bins["bridge"], env)
	case "edge", "edge-lazy":
		// The bridge as an edge of the external server: it stores in its own embedded server and
		// the hub sources from it, so events are counted at the hub once they arrived there, and
		// the hub's CPU is the nats-server CPU.
		if err := stream.Purge(ctx); err != nil {
			return sample{}, err
		}
		dir := filepath.Join(o.dir, "edge-store")
		_ = os.RemoveAll(dir)
		p, err = harness.Start(bins["bridge"], []string{"BRIDGE_LISTEN=" + addr, "NATS_EMBEDDED_LISTEN=127.0.0.1:0", "NATS_EMBEDDED_DIR=" + dir,
			"NATS_HUB_URL=" + fmt.Sprintf("nats-leaf://127.0.0.1:%d", leafPort), "NATS_EDGE_ID=" + prefix, "LOG_LEVEL=warn",
			"NATS_EMBEDDED_SYNC_ALWAYS=" + strconv.FormatBool(srv == "edge")})
	case "edge-alone":
		// An edge whose hub is away: what it costs to store at the edge, counted in its own
		// stream, where the events wait.
		external = false
		np := harness.FreePort()
		countURL = fmt.Sprintf("nats://127.0.0.1:%d", np)
		countStream = "AYRSHARE_EDGE_" + prefix
		dir := filepath.Join(o.dir, "edge-store")
		_ = os.RemoveAll(dir)
		p, err = harness.Start(bins["bridge"], []string{"BRIDGE_LISTEN=" + addr, "NATS_EMBEDDED_LISTEN=" + fmt.Sprintf("127.0.0.1:%d", np), "NATS_EMBEDDED_DIR=" + dir,
			"NATS_HUB_URL=nats-leaf://127.0.0.1:1", "NATS_EDGE_ID=" + prefix, "LOG_LEVEL=error"})
	default:
		return sample{}, fmt.Errorf("unknown server %q", srv)
	}
	if err != nil {
		return sample{}, err
	}
	defer p.Stop(harness.StopGrace)
	if err := harness.WaitReady(ctx, addr, srv == "naive"); err != nil {
		return sample{}, err
	}
	nc, js, err := harness.ConnectJS(ctx, countURL, countStream)
	if err != nil {
		return sample{}, err
	}
	defer nc.Close()
	warm, err := load.Run(ctx, load.Config{Addr: addr, Conns: conns, Duration: o.warmup, Prefix: prefix + "w"})
	if err != nil {
		return sample{}, err
	}
	if strings.HasPrefix(srv, "edge") && srv != "edge-alone" {
		if _, err := waitStored(ctx, js, countStream, uint64(warm.OK)); err != nil {
			return sample{}, err
		}
	}
	before, err := harness.StoredCount(ctx, js, countStream)
	if err != nil {
		return sample{}, err
	}
	groupCounters := []string{"ayrbridge_publish_groups_total", "ayrbridge_publish_group_events_total"}
	var g0 map[string]float64
	if srv != "naive" {
		if g0, err = harness.Counters(ctx, addr, groupCounters...); err != nil {
			return sample{}, err
		}
	}
	cpu0, nats0 := harness.CPU(p.Pid()), harness.CPU(natsProc.Pid())
	res, err := load.Run(ctx, load.Config{Addr: addr, Conns: conns, Duration: o.duration, Prefix: prefix})
	if err != nil {
		return sample{}, err
	}
	cpu1 := harness.CPU(p.Pid())
	var g1 map[string]float64
	if srv != "naive" {
		if g1, err = harness.Counters(ctx, addr, groupCounters...); err != nil {
			return sample{}, err
		}
	}
	if strings.HasPrefix(srv, "edge") && srv != "edge-alone" {
		if _, err := waitStored(ctx, js, countStream, before+uint64(res.OK)); err != nil {
			return sample{}, err
		}
	}
	nats1 := harness.CPU(natsProc.Pid()) // after an edge's hub caught up: its part of the work
	after, err := harness.StoredCount(ctx, js, countStream)
	if err != nil {
		return sample{}, err
	}
	s := sample{
		server: srv, conns: conns, rps: res.RPS(), p50: res.Percentile(50), p99: res.Percentile(99),
		peakRSS: harness.PeakRSS(p.Pid()), ok: res.OK, stored: int(after - before), errors: res.Errors,
		groups: g1[groupCounters[0]] - g0[groupCounters[0]], grouped: g1[groupCounters[1]] - g0[groupCounters[1]],
	}
	for _, n := range res.Non2xx {
		s.errors += n
	}
	if s.stored > 0 {
		s.cpuPerEvent = (cpu1 - cpu0) / time.Duration(s.stored)
		if external {
			s.natsCPU = (nats1 - nats0) / time.Duration(s.stored)
		}
	}
	if s.stored != s.ok {
		return s, fmt.Errorf("the stream stored %d events but %d requests got a 2xx: a benchmark that loses events is not a result", s.stored, s.ok)
	}
	return s, nil
}

// waitStored waits until the stream holds want events (an edge's hub catching up), or for two
// minutes, and returns the count.
func waitStored(ctx context.Context, js jetstream.JetStream, stream string, want uint64) (uint64, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n, err := harness.StoredCount(ctx, js, stream)
		if err != nil || n >= want || time.Now().After(deadline) {
			return n, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// detachEdges removes the sources an edge run added, so that the hub of later runs sources
// nothing that is gone.
func detachEdges(ctx context.Context, js jetstream.JetStream) error {
	s, err := js.Stream(ctx, "AYRSHARE")
	if err != nil {
		return err
	}
	cfg := s.CachedInfo().Config
	if len(cfg.Sources) == 0 {
		return nil
	}
	cfg.Sources = nil
	_, err = js.UpdateStream(ctx, cfg)
	return err
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
func mb(b int64) float64         { return float64(b) / 1e6 }

// median of the per-round values of one server and connection count.
func median[T int64 | float64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

type agg struct {
	rps, p50, p99, cpu, natsCPU float64
	rss                         int64
	ok, stored, errors          int
	groups, grouped             float64
}

func aggregate(samples []sample, server string, conns int) (agg, bool) {
	var rps []float64
	var p50, p99, cpu, natsCPU []time.Duration
	var a agg
	for _, s := range samples {
		if s.server != server || s.conns != conns {
			continue
		}
		rps = append(rps, s.rps)
		p50, p99, cpu, natsCPU = append(p50, s.p50), append(p99, s.p99), append(cpu, s.cpuPerEvent), append(natsCPU, s.natsCPU)
		a.rss = max(a.rss, s.peakRSS)
		a.ok += s.ok
		a.stored += s.stored
		a.errors += s.errors
		a.groups += s.groups
		a.grouped += s.grouped
	}
	if len(rps) == 0 {
		return a, false
	}
	a.rps, a.p50, a.p99, a.cpu, a.natsCPU = median(rps), ms(median(p50)), ms(median(p99)), us(median(cpu)), us(median(natsCPU))
	return a, true
}

func summarize(o options, samples []sample) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Results: %d rounds of %s per server and connection count (medians)\n\n", o.rounds, o.duration)
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %s; the load generator runs on the same CPUs.\n\n", runtime.NumCPU(), harness.CPUModel(), time.Now().UTC().Format("2006-01-02"))
	var verdicts []string
	for _, conns := range o.conns {
		base, haveBase := aggregate(samples, "naive", conns)
		fmt.Fprintf(&b, "### %d connections\n\n", conns)
		if haveBase {
			b.WriteString("| ratio vs naive | req/s | p50 | p99 | CPU per event | nats-server CPU per event |\n|---|---|---|---|---|---|\n")
			for _, srv := range o.servers {
				a, ok := aggregate(samples, srv, conns)
				if !ok || srv == "naive" {
					continue
				}
				natsRatio := "in process"
				if a.natsCPU > 0 && base.natsCPU > 0 {
					natsRatio = fmt.Sprintf("%.2fx", a.natsCPU/base.natsCPU)
				}
				fmt.Fprintf(&b, "| %s | %.2fx | %.2fx | %.2fx | %.2fx | %s |\n", srv, a.rps/base.rps, a.p50/base.p50, a.p99/base.p99, a.cpu/base.cpu, natsRatio)
			}
			b.WriteString("\n")
		}
		b.WriteString("| server | req/s | p50 ms | p99 ms | CPU/event µs (HTTP process) | nats-server CPU/event µs | mean group | peak RSS MB | 2xx | stored | errors |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, srv := range o.servers {
			a, ok := aggregate(samples, srv, conns)
			if !ok {
				continue
			}
			natsCPU := fmt.Sprintf("%.1f", a.natsCPU)
			if a.natsCPU == 0 {
				natsCPU = "in process"
			}
			group := "-"
			if a.groups > 0 {
				group = fmt.Sprintf("%.1f", a.grouped/a.groups)
			}
			fmt.Fprintf(&b, "| %s | %.0f | %.2f | %.2f | %.1f | %s | %s | %.1f | %d | %d | %d |\n",
				srv, a.rps, a.p50, a.p99, a.cpu, natsCPU, group, mb(a.rss), a.ok, a.stored, a.errors)
		}
		b.WriteString("\n")
		verdicts = append(verdicts, targets(samples, conns)...)
	}
	lost := false
	for _, s := range samples {
		lost = lost || s.ok != s.stored
	}
	verdicts = append(verdicts, verdict(!lost, "every run: events stored = 2xx answers"))
	b.WriteString("### Targets\n\n```\n" + strings.Join(verdicts, "\n") + "\n```\n")
	return b.String()
}

// targets are the PASS/FAIL lines of one connection count: against the naive baseline those of
// the first version (CPU) and of group commit (throughput, nats-server CPU at 64 connections),
// against an earlier build (-before) that latency and light load did not get worse.
func targets(samples []sample, conns int) []string {
	var out []string
	base, haveBase := aggregate(samples, "naive", conns)
	bridge, okB := aggregate(samples, "bridge", conns)
	if haveBase && okB {
		if conns >= 64 {
			out = append(out,
				verdict(bridge.rps >= 1.9*base.rps, "throughput at %d connections: bridge %.0f req/s = %.2fx naive (target >= 1.9x)", conns, bridge.rps, bridge.rps/base.rps),
				verdict(bridge.natsCPU <= 0.75*base.natsCPU, "nats-server CPU per stored event at %d connections: bridge %.1f µs = %.2fx naive %.1f µs (target <= 0.75x)", conns, bridge.natsCPU, bridge.natsCPU/base.natsCPU, base.natsCPU),
				verdict(bridge.p99 <= base.p99, "p99 at %d connections: bridge %.2f ms vs naive %.2f ms (target: no worse)", conns, bridge.p99, base.p99))
		}
		out = append(out, verdict(bridge.cpu <= 0.6*base.cpu, "CPU per stored event at %d connections: bridge %.1f µs = %.2fx naive %.1f µs (target <= 0.6x)", conns, bridge.cpu, bridge.cpu/base.cpu, base.cpu))
	}
	if old, okO := aggregate(samples, "before", conns); okO && okB {
		out = append(out,
			verdict(bridge.p50 <= old.p50 && bridge.p99 <= old.p99, "latency at %d connections: p50 %.2f / p99 %.2f ms vs before %.2f / %.2f ms (target: no worse)", conns, bridge.p50, bridge.p99, old.p50, old.p99),
			verdict(bridge.rps >= 0.95*old.rps, "throughput at %d connections: %.0f req/s = %.2fx before (target: no regression, >= 0.95x)", conns, bridge.rps, bridge.rps/old.rps))
	}
	if emb, okM := aggregate(samples, "embedded", conns); okM {
		if edge, ok := aggregate(samples, "edge-alone", conns); ok {
			out = append(out, verdict(edge.rps >= 0.8*emb.rps, "edge on its own at %d connections: %.0f req/s = %.2fx the embedded default (target: within 20%%)", conns, edge.rps, edge.rps/emb.rps))
		}
		if edge, ok := aggregate(samples, "edge", conns); ok {
			out = append(out, fmt.Sprintf("info  edge forwarding to a hub on the same CPUs at %d connections: %.0f req/s = %.2fx the embedded default", conns, edge.rps, edge.rps/emb.rps))
		}
	}
	if emb, okE := aggregate(samples, "embedded", conns); okE {
		if lazy, ok := aggregate(samples, "embedded-lazy", conns); ok {
			out = append(out, verdict(emb.rps >= 0.5*lazy.rps, "durable embedded at %d connections: %.0f req/s = %.2fx the lazy embedded server (target >= 0.5x)", conns, emb.rps, emb.rps/lazy.rps))
		}
		if base, ok := aggregate(samples, "naive", conns); ok {
			out = append(out, fmt.Sprintf("info  durable embedded at %d connections: %.2fx naive (>= 3x is the target when naive's server syncs always)", conns, emb.rps/base.rps))
		}
	}
	if edge, ok := aggregate(samples, "edge", conns); ok {
		if lazy, ok := aggregate(samples, "edge-lazy", conns); ok {
			out = append(out, verdict(edge.rps >= 0.5*lazy.rps, "durable edge forwarding at %d connections: %.0f req/s = %.2fx the lazy edge (target >= 0.5x)", conns, edge.rps, edge.rps/lazy.rps))
		}
	}
	if emb, okE := aggregate(samples, "embedded", conns); okE && okB {
		out = append(out, verdict(emb.rps >= 0.8*bridge.rps, "embedded default at %d connections: %.0f req/s = %.2fx the external-server figure (target: at least 0.8x)", conns, emb.rps, emb.rps/bridge.rps))
	}
	return out
}

func verdict(pass bool, format string, args ...any) string {
	word := "FAIL"
	if pass {
		word = "PASS"
	}
	return word + "  " + fmt.Sprintf(format, args...)
}
