// Command soak holds the bridge at a steady rate for minutes and checks it stays flat: no
// errors, every 2xx stored once, resident memory and goroutines level after warm-up.
//
//	go run ./bench/soak                      # 5 minutes at half the rate measured first
//	go run ./bench/soak -duration 30m -rate 4000
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ayrbridge/ayrbridge/bench/internal/harness"
	"github.com/ayrbridge/ayrbridge/bench/load"
)

func main() {
	duration := flag.Duration("duration", 5*time.Minute, "how long to hold the rate")
	warmup := flag.Duration("warmup", 30*time.Second, "time before the first memory and goroutine reading counts")
	rate := flag.Float64("rate", 0, "requests per second; 0 measures the maximum for 10 s and uses half")
	conns := flag.Int("conns", 64, "connections")
	every := flag.Duration("every", 15*time.Second, "sampling interval")
	dir := flag.String("dir", "bench/out", "build and data directory")
	embedded := flag.Bool("embedded", false, "run the bridge on its embedded server; its RSS then includes JetStream's store cache and duplicate table, which grow with the stream by design")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *duration, *warmup, *rate, *conns, *every, *dir, *embedded); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

type reading struct {
	at         time.Duration
	rss        int64
	goroutines int
}

func run(ctx context.Context, duration, warmup time.Duration, rate float64, conns int, every time.Duration, dir string, embedded bool) error {
	bins, err := harness.Build(ctx, dir, map[string]string{"bridge": "./cmd/bridge", "nats-server": "github.com/nats-io/nats-server/v2"})
	if err != nil {
		return err
	}
	store := filepath.Join(dir, "soak-store")
	_ = os.RemoveAll(store)
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort())
	natsPort := harness.FreePort()
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	env := []string{"BRIDGE_LISTEN=" + addr, "LOG_LEVEL=warn"}
	if embedded {
		env = append(env, "NATS_EMBEDDED_LISTEN="+strings.TrimPrefix(natsURL, "nats://"), "NATS_EMBEDDED_DIR="+store)
	} else {
		ns, err := harness.Start(bins["nats-server"], nil, "-js", "-sd", store, "-a", "127.0.0.1", "-p", strconv.Itoa(natsPort), "-l", filepath.Join(dir, "soak-nats.log"))
		if err != nil {
			return err
		}
		defer ns.Stop(harness.StopGrace)
		env = append(env, "NATS_URL="+natsURL)
	}
	p, err := harness.Start(bins["bridge"], env)
	if err != nil {
		return err
	}
	defer p.Stop(harness.StopGrace)
	if err := harness.WaitReady(ctx, addr, false); err != nil {
		return err
	}
	nc, js, err := harness.ConnectJS(ctx, natsURL, "AYRSHARE")
	if err != nil {
		return err
	}
	defer nc.Close()
	pid := p.Pid()
	var sent, ok, failed int
	if rate == 0 {
		res, err := load.Run(ctx, load.Config{Addr: addr, Conns: conns, Duration: 10 * time.Second, Prefix: "max"})
		if err != nil {
			return err
		}
		sent, ok, failed = sent+res.Sent, ok+res.OK, failed+res.Sent-res.OK
		rate = res.RPS() / 2
		fmt.Printf("maximum %.0f req/s at %d connections; soaking at %.0f req/s\n", res.RPS(), conns, rate)
	}

	done := make(chan struct {
		res load.Result
		err error
	}, 1)
	go func() {
		res, err := load.Run(ctx, load.Config{Addr: addr, Conns: conns, Duration: duration, Rate: rate, Prefix: "soak"})
		done <- struct {
			res load.Result
			err error
		}{res, err}
	}()
	start := time.Now()
	var readings []reading
	tick := time.NewTicker(every)
	defer tick.Stop()
	var res load.Result
wait:
	for {
		select {
		case r := <-done:
			if r.err != nil {
				return r.err
			}
			res = r.res
			break wait
		case <-tick.C:
			g, _ := goroutines(addr)
			rd := reading{at: time.Since(start), rss: harness.RSS(pid), goroutines: g}
			readings = append(readings, rd)
			fmt.Printf("%6s  rss %6.1f MB  goroutines %4d\n", rd.at.Round(time.Second), float64(rd.rss)/1e6, rd.goroutines)
		}
	}
	sent, ok, failed = sent+res.Sent, ok+res.OK, failed+res.Sent-res.OK
	stored, err := harness.StoredCount(ctx, js, "AYRSHARE")
	if err != nil {
		return err
	}
	var first, last reading
	for _, r := range readings {
		if r.at >= warmup && first.at == 0 {
			first = r
		}
		last = r
	}
	if first.at == 0 {
		return fmt.Errorf("no reading after the %s warm-up: run longer", warmup)
	}
	fmt.Printf("\nsoak: %s at %.0f req/s (achieved %.0f), %d connections\n", duration, rate, res.RPS(), conns)
	fmt.Printf("sent %d, 2xx %d, errors %d, stored %d\n", sent, ok, failed, stored)
	fmt.Printf("after warm-up (%s): RSS %.1f MB -> %.1f MB, goroutines %d -> %d\n", first.at.Round(time.Second),
		float64(first.rss)/1e6, float64(last.rss)/1e6, first.goroutines, last.goroutines)
	verdicts := []struct {
		pass bool
		what string
	}{
		{failed == 0, fmt.Sprintf("zero errors (%d)", failed)},
		{int(stored) == ok, fmt.Sprintf("every 2xx stored once (%d stored, %d 2xx, unique ids)", stored, ok)},
		{last.rss <= first.rss+first.rss/10, fmt.Sprintf("RSS flat after warm-up: %.1f -> %.1f MB (within 10%%)", float64(first.rss)/1e6, float64(last.rss)/1e6)},
		{last.goroutines <= first.goroutines+10, fmt.Sprintf("goroutines flat: %d -> %d (within 10)", first.goroutines, last.goroutines)},
	}
	for _, v := range verdicts {
		word := "FAIL"
		if v.pass {
			word = "PASS"
		}
		fmt.Println(word + "  " + v.what)
	}
	return nil
}

// goroutines reads go_goroutines from the bridge's /metrics.
func goroutines(addr string) (int, error) {
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, err := strconv.ParseFloat(v, 64)
			return int(n), err
		}
	}
	return 0, fmt.Errorf("no go_goroutines in /metrics")
}
