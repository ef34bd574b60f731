package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// Readiness reports whether webhooks can be stored right now.
type Readiness interface {
	Ready(ctx context.Context) error
}

// ReadinessFunc adapts a function to Readiness.
type ReadinessFunc func(ctx context.Context) error

// Ready calls f.
func (f ReadinessFunc) Ready(ctx context.Context) error { return f(ctx) }

// readyTimeout bounds one readiness check, well inside any orchestrator's probe timeout.
const readyTimeout = 2 * time.Second

// Routes serves the webhook at /webhook, liveness at /healthz, readiness at /readyz and, when
// metrics is non-nil, Prometheus metrics at /metrics. Other paths get a JSON 404.
func Routes(webhook *Handler, ready Readiness, metrics http.Handler) fasthttp.RequestHandler {
	var serveMetrics fasthttp.RequestHandler
	if metrics != nil {
		serveMetrics = fasthttpadaptor.NewFastHTTPHandler(metrics)
	}
	return func(rc *fasthttp.RequestCtx) {
		switch string(rc.Path()) {
		case "/webhook":
			webhook.ServeFastHTTP(rc)
		case "/healthz":
			if probe(rc) {
				writeJSON(rc, fasthttp.StatusOK, []byte(`{"status":"ok"}`+"\n"))
			}
		case "/readyz":
			if !probe(rc) {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
			defer cancel()
			if err := ready.Ready(ctx); err != nil {
				writeError(rc, errUnavailable, "not ready: "+err.Error())
				return
			}
			writeJSON(rc, fasthttp.StatusOK, []byte(`{"status":"ready"}`+"\n"))
		case "/metrics":
			if serveMetrics != nil && probe(rc) {
				serveMetrics(rc)
				return
			}
			fallthrough
		default:
			writeError(rc, errNotFound, "no such endpoint: "+string(rc.Path()))
		}
	}
}

// probe refuses every method but GET and HEAD; it reports whether the request may go on.
func probe(rc *fasthttp.RequestCtx) bool {
	if rc.IsGet() || rc.IsHead() {
		return true
	}
	rc.Response.Header.Set("Allow", "GET, HEAD")
	writeError(rc, errMethod, "method not allowed: use GET")
	return false
}

// ServerConfig holds the limits that keep slow, idle or oversized clients from holding the
// bridge's connections or memory.
type ServerConfig struct {
	MaxBodyBytes   int           // larger bodies get 413 before they are read
	MaxHeaderBytes int           // larger request headers get 431
	MaxConns       int           // connections served at once; serve through LimitListener to refuse more with a JSON 503
	ReadTimeout    time.Duration // to read a whole request, headers and body
	WriteTimeout   time.Duration // to write a response
	IdleTimeout    time.Duration // a keep-alive connection may wait this long for its next request
}

// Validate reports every limit that is not positive.
func (c ServerConfig) Validate() error {
	var errs []error
	for _, v := range []struct {
		name  string
		value int64
	}{
		{"max body bytes", int64(c.MaxBodyBytes)}, {"max header bytes", int64(c.MaxHeaderBytes)},
		{"max conns", int64(c.MaxConns)}, {"read timeout", int64(c.ReadTimeout)},
		{"write timeout", int64(c.WriteTimeout)}, {"idle timeout", int64(c.IdleTimeout)},
	} {
		if v.value <= 0 {
			errs = append(errs, fmt.Errorf("ingest: %s must be positive", v.name))
		}
	}
	return errors.Join(errs...)
}

// NewServer returns the HTTP server for handler with cfg's limits. Requests it refuses while
// reading them (too large, too slow, malformed) get the same JSON errors as the handler's and
// are counted in metrics when it is non-nil.
func NewServer(handler fasthttp.RequestHandler, cfg ServerConfig, metrics *Metrics, log zerolog.Logger) (*fasthttp.Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &fasthttp.Server{
		Handler: handler,
		ErrorHandler: func(rc *fasthttp.RequestCtx, err error) {
			status := writeError(rc, serverError(err), serverError(err).Error())
			metrics.answered(status)
		},
		Name:                               "ayrbridge",
		Concurrency:                        cfg.MaxConns,
		ReadBufferSize:                     cfg.MaxHeaderBytes,
		ReadTimeout:                        cfg.ReadTimeout,
		WriteTimeout:                       cfg.WriteTimeout,
		IdleTimeout:                        cfg.IdleTimeout,
		MaxRequestBodySize:                 cfg.MaxBodyBytes,
		DisablePreParseMultipartForm:       true,
		NoDefaultContentType:               true,
		CloseOnShutdown:                    true,
		SleepWhenConcurrencyLimitsExceeded: 10 * time.Millisecond,
		// Sampled: these are mostly clients failing a TLS handshake or sending too much.
		Logger: fasthttpLogger{sampled(log.With().Str("component", "http").Logger())},
	}, nil
}

// fasthttpLogger sends fasthttp's own messages (accept errors and the like) to zerolog.
type fasthttpLogger struct{ log zerolog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) { l.log.Warn().Msgf(format, args...) }
