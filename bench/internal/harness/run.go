package harness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ayrbridge/ayrbridge/internal/metricstest"
	"github.com/ayrbridge/ayrbridge/internal/proc"
)

// StoredCount is the number of messages stream holds.
func StoredCount(ctx context.Context, js jetstream.JetStream, stream string) (uint64, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// ConnectJS connects to url and, with stream not empty, waits until that stream exists (the
// bridge creates it after it connects).
func ConnectJS(ctx context.Context, url string, stream string) (*nats.Conn, jetstream.JetStream, error) {
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
	if stream == "" {
		return nc, js, nil
	}
	for range 100 {
		if _, err = js.Stream(ctx, stream); err == nil {
			return nc, js, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	nc.Close()
	return nil, nil, fmt.Errorf("stream %s on %s: %w", stream, url, err)
}

// WaitReady waits until the server answers: /readyz 200 for the bridge, any answer for naive.
func WaitReady(ctx context.Context, addr string, anyAnswer bool) error {
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

// Build compiles each package of pkgs (name -> import path) into dir and returns the paths.
func Build(ctx context.Context, dir string, pkgs map[string]string) (map[string]string, error) {
	bins := map[string]string{}
	for name, pkg := range pkgs {
		bin := filepath.Join(dir, name)
		fmt.Printf("building %s\n", pkg)
		if err := proc.Build(ctx, bin, pkg); err != nil {
			return nil, err
		}
		bins[name] = bin
	}
	return bins, nil
}

// Start runs bin with env added to this process's environment; its output goes to stderr.
// Stop it with Stop(StopGrace).
func Start(bin string, env []string, args ...string) (*proc.Proc, error) {
	return proc.Start(proc.Config{Bin: bin, Args: args, Env: env, Output: os.Stderr})
}

// StopGrace is how long a benchmark waits for a program to exit after SIGTERM.
const StopGrace = 30 * time.Second

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() int {
	ports, err := proc.FreePorts(1)
	if err != nil {
		panic(err)
	}
	return ports[0]
}

// Counters reads the named unlabelled counters from addr's /metrics; a counter the server does
// not export (an older bridge) is absent from the map.
func Counters(ctx context.Context, addr string, names ...string) (map[string]float64, error) {
	samples, err := metricstest.Scrape(ctx, "http://"+addr+"/metrics")
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", addr, err)
	}
	out := map[string]float64{}
	for _, name := range names {
		if v, ok := samples[name]; ok {
			out[name] = v
		}
	}
	return out, nil
}
