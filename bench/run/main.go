// Command run is ayrbridge's load benchmark: it builds the bridge, the naive baseline
// (bench/naive) and nats-server, then drives each in turn, A B A B, at several connection
// counts, and prints requests/s, latency, CPU per stored event, peak RSS and the ratios
// against the baseline, with PASS/FAIL lines for the targets.
//
//	go run ./bench/run                       # 3 rounds of 8 s at 8 and 64 connections
//	go run ./bench/run -out bench/results.md # also write the tables as Markdown
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ayrbridge/ayrbridge/bench/load"
)

type options struct {
	rounds   int
	duration time.Duration
	warmup   time.Duration
	conns    []int
	servers  []string
	out      string
	dir      string
}

func main() {
	var o options
	var conns, servers string
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each runs every server once per connection count")
	flag.DurationVar(&o.duration, "duration", 8*time.Second, "measured load per run")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each run")
	flag.StringVar(&conns, "conns", "8,64", "connection counts")
	flag.StringVar(&servers, "servers", "bridge,naive,embedded", "servers to drive: bridge (external nats-server), naive, embedded (bridge on its embedded server), embedded-sync (embedded with NATS_EMBEDDED_SYNC_ALWAYS)")
	flag.StringVar(&o.out, "out", "", "also write the result tables as Markdown to this file")
	flag.StringVar(&o.dir, "dir", "bench/out", "build and data directory")
	flag.Parse()
	for _, c := range strings.Split(conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n <= 0 {
			fatal(fmt.Errorf("-conns %q: %v", conns, err))
		}
		o.conns = append(o.conns, n)
	}
	o.servers = strings.Split(servers, ",")
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
}

func run(ctx context.Context, o options) error {
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return err
	}
	bins, err := build(ctx, o.dir)
	if err != nil {
		return err
	}
	fmt.Printf("machine: %s/%s, %d CPUs, %s; load: Go keep-alive generator in this process\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuModel())
	natsPort := freePort()
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	natsDir := filepath.Join(o.dir, "nats-store")
	_ = os.RemoveAll(natsDir)
	natsProc, err := start(ctx, bins["nats-server"], nil, "-js", "-sd", natsDir, "-a", "127.0.0.1", "-p", strconv.Itoa(natsPort), "-l", filepath.Join(o.dir, "nats-server.log"))
	if err != nil {
		return err
	}
	defer natsProc.stop()
	nc, js, err := connectJS(ctx, natsURL, false)
	if err != nil {
		return err
	}
	defer nc.Close()
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "AYRSHARE", Subjects: []string{"ayrshare.>"}, Storage: jetstream.FileStorage, Duplicates: 24 * time.Hour,
	})
	if err != nil {
		return fmt.Errorf("create stream: %w", err)
	}

	var samples []sample
	for round := 1; round <= o.rounds; round++ {
		for _, conns := range o.conns {
			for _, srv := range o.servers {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				prefix := fmt.Sprintf("%c%d%03d", srv[0], round, conns)
				s, err := measure(ctx, o, bins, srv, conns, prefix, natsURL, natsProc, stream)
				if err != nil {
					return fmt.Errorf("round %d, %s at %d connections: %w", round, srv, conns, err)
				}
				fmt.Printf("round %d  %-13s %3d conns: %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  cpu/event %6.1f µs  rss %5.1f MB  2xx %d = stored %d  errors %d\n",
					round, srv, conns, s.rps, ms(s.p50), ms(s.p99), us(s.cpuPerEvent), mb(s.peakRSS), s.ok, s.stored, s.errors)
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
func measure(ctx context.Context, o options, bins map[string]string, srv string, conns int, prefix, natsURL string, natsProc *proc, stream jetstream.Stream) (sample, error) {
	httpPort := freePort()
	addr := fmt.Sprintf("127.0.0.1:%d", httpPort)
	var p *proc
	var err error
	countURL := natsURL
	external := true
	switch srv {
	case "bridge":
		if err := stream.Purge(ctx); err != nil {
			return sample{}, err
		}
		p, err = start(ctx, bins["bridge"], []string{"BRIDGE_LISTEN=" + addr, "NATS_URL=" + natsURL, "LOG_LEVEL=warn"})
	case "naive":
		if err := stream.Purge(ctx); err != nil {
			return sample{}, err
		}
		p, err = start(ctx, bins["naive"], []string{"NAIVE_LISTEN=" + addr, "NATS_URL=" + natsURL})
	case "embedded", "embedded-sync":
		external = false
		np := freePort()
		countURL = fmt.Sprintf("nats://127.0.0.1:%d", np)
		dir := filepath.Join(o.dir, "embedded-store")
		_ = os.RemoveAll(dir)
		env := []string{"BRIDGE_LISTEN=" + addr, "NATS_EMBEDDED_LISTEN=" + fmt.Sprintf("127.0.0.1:%d", np), "NATS_EMBEDDED_DIR=" + dir, "LOG_LEVEL=warn"}
		if srv == "embedded-sync" {
			env = append(env, "NATS_EMBEDDED_SYNC_ALWAYS=true")
		}
		p, err = start(ctx, bins["bridge"], env)
	default:
		return sample{}, fmt.Errorf("unknown server %q", srv)
	}
	if err != nil {
		return sample{}, err
	}
	defer p.stop()
	if err := waitReady(ctx, addr, srv == "naive"); err != nil {
		return sample{}, err
	}
	nc, js, err := connectJS(ctx, countURL, true)
	if err != nil {
		return sample{}, err
	}
	defer nc.Close()
	if _, err := load.Run(ctx, load.Config{Addr: addr, Conns: conns, Duration: o.warmup, Prefix: prefix + "w"}); err != nil {
		return sample{}, err
	}
	before, err := storedCount(ctx, js)
	if err != nil {
		return sample{}, err
	}
	cpu0, nats0 := cpuTime(p.cmd.Process.Pid), cpuTime(natsProc.cmd.Process.Pid)
	res, err := load.Run(ctx, load.Config{Addr: addr, Conns: conns, Duration: o.duration, Prefix: prefix})
	if err != nil {
		return sample{}, err
	}
	cpu1, nats1 := cpuTime(p.cmd.Process.Pid), cpuTime(natsProc.cmd.Process.Pid)
	after, err := storedCount(ctx, js)
	if err != nil {
		return sample{}, err
	}
	s := sample{
		server: srv, conns: conns, rps: res.RPS(), p50: res.Percentile(50), p99: res.Percentile(99),
		peakRSS: peakRSS(p.cmd.Process.Pid), ok: res.OK, stored: int(after - before), errors: res.Errors,
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

func storedCount(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	s, err := js.Stream(ctx, "AYRSHARE")
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// connectJS connects to url and, with waitStream, waits until the stream exists (the bridge
// creates it after it connects).
func connectJS(ctx context.Context, url string, waitStream bool) (*nats.Conn, jetstream.JetStream, error) {
	var nc *nats.Conn
	var err error
	for range 100 {
		if nc, err = nats.Connect(url); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("connect %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	if !waitStream {
		return nc, js, nil
	}
	for range 100 {
		if _, err = js.Stream(ctx, "AYRSHARE"); err == nil {
			return nc, js, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	nc.Close()
	return nil, nil, fmt.Errorf("stream AYRSHARE on %s: %w", url, err)
}

// waitReady waits until the server answers: /readyz 200 for the bridge, any answer for naive.
func waitReady(ctx context.Context, addr string, anyAnswer bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		res, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if anyAnswer || res.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready after 30s", addr)
}

// build compiles the three programs into dir.
func build(ctx context.Context, dir string) (map[string]string, error) {
	bins := map[string]string{}
	for name, pkg := range map[string]string{
		"bridge": "./cmd/bridge", "naive": "./bench/naive", "nats-server": "github.com/nats-io/nats-server/v2",
	} {
		bin := filepath.Join(dir, name)
		fmt.Printf("building %s\n", pkg)
		out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
		bins[name] = bin
	}
	return bins, nil
}

type proc struct {
	cmd  *exec.Cmd
	exit chan error
}

func start(ctx context.Context, bin string, env []string, args ...string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, exit: make(chan error, 1)}
	go func() { p.exit <- cmd.Wait() }()
	return p, nil
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exit:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exit
	}
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// cpuTime is a process's user+sys CPU time from /proc (clock ticks of 10 ms).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// peakRSS is a process's high-water resident set (VmHWM).
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
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
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %s; the load generator runs on the same CPUs.\n\n", runtime.NumCPU(), cpuModel(), time.Now().UTC().Format("2006-01-02"))
	var verdicts []string
	for _, conns := range o.conns {
		base, haveBase := aggregate(samples, "naive", conns)
		fmt.Fprintf(&b, "### %d connections\n\n", conns)
		if haveBase {
			b.WriteString("| ratio vs naive | req/s | p99 | CPU per event |\n|---|---|---|---|\n")
			for _, srv := range o.servers {
				a, ok := aggregate(samples, srv, conns)
				if !ok || srv == "naive" {
					continue
				}
				fmt.Fprintf(&b, "| %s | %.2fx | %.2fx | %.2fx |\n", srv, a.rps/base.rps, a.p99/base.p99, a.cpu/base.cpu)
			}
			b.WriteString("\n")
		}
		b.WriteString("| server | req/s | p50 ms | p99 ms | CPU/event µs (HTTP process) | nats-server CPU/event µs | peak RSS MB | 2xx | stored | errors |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for _, srv := range o.servers {
			a, ok := aggregate(samples, srv, conns)
			if !ok {
				continue
			}
			natsCPU := fmt.Sprintf("%.1f", a.natsCPU)
			if a.natsCPU == 0 {
				natsCPU = "in process"
			}
			fmt.Fprintf(&b, "| %s | %.0f | %.2f | %.2f | %.1f | %s | %.1f | %d | %d | %d |\n",
				srv, a.rps, a.p50, a.p99, a.cpu, natsCPU, mb(a.rss), a.ok, a.stored, a.errors)
		}
		b.WriteString("\n")
		bridge, okB := aggregate(samples, "bridge", conns)
		if haveBase && okB {
			if conns >= 64 {
				verdicts = append(verdicts,
					verdict(bridge.rps >= 1.3*base.rps, "throughput at %d connections: bridge %.0f req/s = %.2fx naive (target >= 1.3x)", conns, bridge.rps, bridge.rps/base.rps),
					verdict(bridge.p99 <= base.p99, "p99 at %d connections: bridge %.2f ms vs naive %.2f ms (target: no worse)", conns, bridge.p99, base.p99))
			}
			verdicts = append(verdicts, verdict(bridge.cpu <= 0.6*base.cpu, "CPU per stored event at %d connections: bridge %.1f µs = %.2fx naive %.1f µs (target <= 0.6x)", conns, bridge.cpu, bridge.cpu/base.cpu, base.cpu))
		}
		if emb, okE := aggregate(samples, "embedded", conns); okE && okB {
			verdicts = append(verdicts, verdict(emb.rps >= 0.8*bridge.rps, "embedded default at %d connections: %.0f req/s = %.2fx the external-server figure (target within 20%%)", conns, emb.rps, emb.rps/bridge.rps))
		}
	}
	lost := false
	for _, s := range samples {
		lost = lost || s.ok != s.stored
	}
	verdicts = append(verdicts, verdict(!lost, "every run: events stored = 2xx answers"))
	b.WriteString("### Targets\n\n```\n" + strings.Join(verdicts, "\n") + "\n```\n")
	return b.String()
}

func verdict(pass bool, format string, args ...any) string {
	word := "FAIL"
	if pass {
		word = "PASS"
	}
	return word + "  " + fmt.Sprintf(format, args...)
}
