package ingest

import (
	"context"
	"net/http"
)

// Readiness reports whether webhooks can be stored right now.
type Readiness interface {
	Ready(ctx context.Context) error
}

// ReadinessFunc adapts a function to Readiness.
type ReadinessFunc func(ctx context.Context) error

// Ready calls f.
func (f ReadinessFunc) Ready(ctx context.Context) error { return f(ctx) }

// Routes serves the webhook at /webhook, liveness at /healthz, readiness at /readyz and, when
// metrics is non-nil, Prometheus metrics at /metrics. Unknown paths get a JSON 404.
func Routes(webhook http.Handler, ready Readiness, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/webhook", webhook)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := ready.Ready(r.Context()); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "not ready: " + err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "no such endpoint: " + r.URL.Path})
	})
	return mux
}
