package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/push"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/ayrbridge/ayrbridge/replay"
)

// pushJob is the Pushgateway job a one-shot run pushes to.
const pushJob = "ayrbridge_replay"

// serveMetrics serves /metrics (reg, and the Go and process collectors) and /healthz on addr
// until stop is called.
func serveMetrics(addr string, reg *prometheus.Registry, log zerolog.Logger) (stop func(), err error) {
	runtime := prometheus.NewRegistry()
	runtime.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g := prometheus.Gatherers{reg, runtime}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"status":"ok"}`)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("REPLAY_METRICS_LISTEN: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("metrics server stopped")
		}
	}()
	log.Info().Str("addr", ln.Addr().String()).Msg("serving /metrics and /healthz")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// pushMetrics pushes reg to the Pushgateway at url under job ayrbridge_replay. It adds rather
// than replaces, and leaves the last-success time out of a failed run's push, so the gateway
// keeps the time of the last run that succeeded for the staleness alert.
func pushMetrics(ctx context.Context, url string, reg *prometheus.Registry, ok bool, log zerolog.Logger) {
	var g prometheus.Gatherer = reg
	if !ok {
		g = prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
			mfs, err := reg.Gather()
			out := mfs[:0]
			for _, mf := range mfs {
				if mf.GetName() != replay.LastSuccessMetric {
					out = append(out, mf)
				}
			}
			return out, err
		})
	}
	// A run cut short still reports; the push gets its own bound.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := push.New(url, pushJob).Gatherer(g).Client(&http.Client{}).AddContext(pctx)
	if err != nil {
		log.Error().Err(err).Str("url", url).Msg("push to the Pushgateway failed")
		return
	}
	log.Info().Str("url", url).Str("job", pushJob).Bool("success", ok).Msg("metrics pushed")
}
