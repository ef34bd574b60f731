// Command bridge receives Ayrshare webhooks over HTTP and publishes each as a CloudEvent on
// NATS JetStream, answering 2xx only once JetStream has acknowledged it. Without NATS_URL it
// runs an embedded nats-server with JetStream. Configuration is read from the environment.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/ayrbridge/ayrbridge/ingest"
	"github.com/ayrbridge/ayrbridge/publish"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := loadConfig(nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bridge:", err)
		os.Exit(2)
	}
	log := cfg.Log.New(os.Stderr, "bridge")
	go func() {
		// A second signal during shutdown kills the process, as operators expect.
		<-ctx.Done()
		stop()
	}()
	if err := run(ctx, cfg, log, nil); err != nil {
		log.Error().Err(err).Msg("bridge stopped")
		os.Exit(1)
	}
	log.Info().Msg("bridge stopped")
}

// addrs is where a started bridge can be reached; tests use it to find ports picked by the OS.
type addrs struct {
	HTTP string // host:port of the webhook server
	NATS string // client URL of the embedded server; empty with an external one
}

// run starts the bridge and serves until ctx ends, then shuts down in reverse order: stop
// accepting, finish in-flight requests, drain NATS, stop the embedded server. started, if not
// nil, is called once the HTTP server listens.
func run(ctx context.Context, cfg config, log zerolog.Logger, started func(addrs)) error {
	logStartup(cfg, log)
	var ns *server.Server
	if cfg.embedded() {
		ecfg := publish.EmbeddedConfig{
			Listen:     cfg.EmbeddedListen,
			StoreDir:   cfg.EmbeddedDir,
			MaxPayload: maxPayload(cfg.MaxBodyBytes),
			// With group fsync the server writes before it acks and the bridge fsyncs after.
			SyncAlways: cfg.EmbeddedSyncAlways && !cfg.groupFsync(),
		}
		if cfg.edge() {
			hub, err := cfg.hubLink()
			if err != nil {
				return err
			}
			ecfg.Hub = hub
			ecfg.Name = publish.EdgeDomain(cfg.Hub.EdgeID)
			ecfg.Domain = ecfg.Name
			// Room for the stream's budget and JetStream's own files, so that a full edge refuses
			// publishes instead of disabling JetStream.
			ecfg.MaxStore = cfg.Hub.MaxBytes + max(cfg.Hub.MaxBytes/10, 64<<20)
		}
		var err error
		ns, err = publish.StartEmbedded(ecfg, log)
		if err != nil {
			return err
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
			log.Info().Msg("embedded nats stopped")
		}()
		log.Info().Str("url", ns.ClientURL()).Str("store", cfg.EmbeddedDir).Msg("embedded nats with jetstream started")
	}

	connCfg := cfg.NATS
	connCfg.Name = "ayrbridge-bridge"
	nc, err := publish.Connect(connCfg, ns, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}

	// A stream that exists but cannot serve stops the bridge; NATS being unreachable does not:
	// readiness stays false and setup is retried until NATS comes.
	fatal := make(chan error, 1)
	streamReady := make(chan struct{})
	go ensureStream(ctx, js, nc, cfg, log, streamReady, fatal)

	pubOpts := append(cfg.publisherOptions(), publish.WithLogger(log))
	if cfg.groupFsync() {
		// Outlives the publisher: requests finishing during shutdown still wait for their fsync.
		sctx, stopSync := context.WithCancel(context.Background())
		defer stopSync()
		syncer, err := publish.NewStoreSync(sctx, cfg.EmbeddedDir)
		if err != nil {
			return err
		}
		pubOpts = append(pubOpts, publish.WithSyncer(syncer))
	}
	pub, err := publish.NewPublisher(nc, cfg.localStream().Name, pubOpts...)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		publish.NewCollector(nc, pub))
	if cfg.edge() {
		edge, err := publish.NewEdge(nc, ns, publish.EdgeConfig{
			Stream:    cfg.edgeStream().Name,
			Domain:    publish.EdgeDomain(cfg.Hub.EdgeID),
			HubDomain: cfg.Hub.Domain,
			Hub:       cfg.streamConfig(),
			Budget:    cfg.Hub.MaxBytes,
			Attach:    cfg.Hub.Attach,
			Every:     cfg.Hub.Every,
		}, log)
		if err != nil {
			return err
		}
		reg.MustRegister(edge)
		// The hub plays no part in the answers: attaching runs beside them, as long as it takes,
		// once the edge stream it attaches exists.
		go func() {
			select {
			case <-streamReady:
				edge.Run(ctx)
			case <-ctx.Done():
			}
		}()
	}
	metrics, err := ingest.NewMetrics(reg)
	if err != nil {
		return err
	}
	opts := []ingest.Option{
		ingest.WithLogger(log),
		ingest.WithMaxBodyBytes(cfg.MaxBodyBytes),
		ingest.WithSecrets(cfg.Secrets...),
		ingest.WithTimestampSkew(cfg.TimestampSkew),
		ingest.WithRetryAfter(cfg.RetryAfter),
		ingest.WithPublishTimeout(cfg.PublishTimeout),
		ingest.WithMetrics(metrics),
	}
	var reloaders []reloader
	if cfg.ProfileSecrets != "" {
		secrets, err := ingest.NewProfileSecrets(cfg.ProfileSecrets, reg, log)
		if err != nil {
			return err
		}
		opts = append(opts, ingest.WithProfileSecrets(secrets))
		reloaders = append(reloaders, secrets)
	}
	var certs *ingest.CertReloader
	if cfg.TLSCert != "" {
		if certs, err = ingest.NewCertReloader(cfg.TLSCert, cfg.TLSKey, log); err != nil {
			return err
		}
		reg.MustRegister(certs.Collector())
		reloaders = append(reloaders, certs)
	}
	handler, err := ingest.NewHandler(pub, opts...)
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP) // before anything is served: an early SIGHUP must not kill the bridge
	defer signal.Stop(hup)
	go watch(ctx, reloaders, cfg.ReloadInterval, hup, log)
	routes := ingest.Routes(handler, pub, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv, err := ingest.NewServer(routes, cfg.server(), metrics, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	served := make(chan error, 1)
	scheme, serving := "http", ingest.LimitListener(ln, cfg.MaxConns)
	if certs != nil {
		// TLS outside the limit: the handshake runs on the server's worker, bounded by its read
		// timeout, and a refused connection is still counted.
		scheme, serving = "https", tls.NewListener(serving, certs.TLSConfig())
	}
	go func() { served <- srv.Serve(serving) }()
	log.Info().Str("addr", ln.Addr().String()).Str("scheme", scheme).Msg("accepting webhooks on /webhook")
	if started != nil {
		a := addrs{HTTP: ln.Addr().String()}
		if ns != nil {
			a.NATS = ns.ClientURL()
		}
		started(a)
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info().Msg("shutting down: no new connections, finishing requests in flight")
	case runErr = <-fatal:
	case err := <-served:
		runErr = fmt.Errorf("http server: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.ShutdownWithContext(sctx); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("http shutdown: %w", err))
	}
	if err := pub.Close(sctx); err != nil {
		runErr = errors.Join(runErr, err)
	}
	if err := drain(sctx, nc); err != nil {
		runErr = errors.Join(runErr, err)
	}
	return runErr
}

// ensureStream sets up the stream once NATS answers, retrying connection problems, then closes
// ready; a stream that cannot serve is reported on fatal.
func ensureStream(ctx context.Context, js jetstream.JetStream, nc *nats.Conn, cfg config, log zerolog.Logger, ready chan<- struct{}, fatal chan<- error) {
	policy := &backoff.ExponentialBackOff{
		InitialInterval:     100 * time.Millisecond,
		RandomizationFactor: 0.2,
		Multiplier:          2,
		MaxInterval:         5 * time.Second,
	}
	s, err := backoff.Retry(ctx, func() (jetstream.Stream, error) {
		if err := publish.WaitConnected(ctx, nc); err != nil {
			return nil, backoff.Permanent(err)
		}
		if max := nc.MaxPayload(); max < int64(maxPayload(cfg.MaxBodyBytes)) {
			log.Warn().Int64("server_max_payload", max).Int("max_body_bytes", cfg.MaxBodyBytes).
				Msg("nats max_payload is below BRIDGE_MAX_BODY_BYTES plus headers: the largest webhooks will be refused by the server")
		}
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		s, err := publish.EnsureStream(actx, js, cfg.localStream())
		if errors.Is(err, publish.ErrStreamIncompatible) {
			return nil, backoff.Permanent(err)
		}
		return s, err
	}, backoff.WithBackOff(policy), backoff.WithMaxElapsedTime(0), backoff.WithNotify(func(err error, wait time.Duration) {
		log.Warn().Err(err).Dur("retry_in", wait).Msg("stream setup failed, retrying")
	}))
	switch {
	case err == nil:
		info := s.CachedInfo()
		log.Info().Str("stream", info.Config.Name).Strs("subjects", info.Config.Subjects).
			Int("replicas", info.Config.Replicas).Stringer("dedup_window", info.Config.Duplicates).
			Uint64("messages", info.State.Msgs).Msg("stream ready")
		close(ready)
	case errors.Is(err, publish.ErrStreamIncompatible):
		fatal <- err
	}
	// Otherwise ctx ended: the bridge is shutting down.
}

// reloader is a mounted file the bridge rereads on SIGHUP and whenever it changes.
type reloader interface {
	Reload() error
	Watch(ctx context.Context, every time.Duration)
}

// watch runs every reloader's watch until ctx ends and reloads them all on SIGHUP, as operators
// expect of a daemon; each logs its own errors and keeps what it had.
func watch(ctx context.Context, rs []reloader, every time.Duration, hup <-chan os.Signal, log zerolog.Logger) {
	for _, r := range rs {
		go r.Watch(ctx, every)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			log.Info().Int("reloaders", len(rs)).Msg("SIGHUP: reloading profile secrets and certificate")
			for _, r := range rs {
				_ = r.Reload()
			}
		}
	}
}

// drain lets every publish in flight finish and closes the connection.
func drain(ctx context.Context, nc *nats.Conn) error {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil
		}
		return fmt.Errorf("drain nats: %w", err)
	}
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("drain nats: %w", ctx.Err())
	}
}

// maxPayload is the NATS message size a body of maxBody bytes needs: the body plus headers.
func maxPayload(maxBody int) int32 {
	const headroom = 64 << 10
	const serverDefault = 1 << 20
	return int32(max(maxBody+headroom, serverDefault))
}

func logStartup(cfg config, log zerolog.Logger) {
	ev := log.Info().
		Str("listen", cfg.Listen).
		Int("max_body_bytes", cfg.MaxBodyBytes).
		Int("max_header_bytes", cfg.MaxHeaderBytes).
		Int("max_conns", cfg.MaxConns).
		Stringer("publish_timeout", cfg.PublishTimeout).
		Stringer("read_timeout", cfg.ReadTimeout).
		Stringer("write_timeout", cfg.WriteTimeout).
		Stringer("idle_timeout", cfg.IdleTimeout).
		Int("webhook_secrets", len(cfg.Secrets)).
		Str("profile_secrets_dir", cfg.ProfileSecrets).
		Bool("tls", cfg.TLSCert != "").
		Stringer("reload_interval", cfg.ReloadInterval).
		Stringer("signature_max_skew", cfg.TimestampSkew).
		Str("stream", cfg.Stream).
		Int("replicas", cfg.Replicas).
		Stringer("dedup_window", cfg.DedupWindow).
		Stringer("max_age", cfg.MaxAge)
	if cfg.edge() {
		ev = ev.Str("edge_id", cfg.Hub.EdgeID).Strs("hub_urls", publish.RedactURLs(cfg.Hub.URLs)).
			Str("hub_domain", cfg.Hub.Domain).Bool("hub_attach", cfg.Hub.Attach).Int64("edge_max_bytes", cfg.Hub.MaxBytes).
			Bool("hub_creds", cfg.Hub.Creds != "").Bool("hub_nkey", cfg.Hub.NKeySeed != "").Bool("hub_tls_client_cert", cfg.Hub.TLSCert != "")
	}
	if cfg.embedded() {
		role := "embedded"
		if cfg.edge() {
			role = "edge"
		}
		ev = ev.Str("nats", role).Str("embedded_listen", cfg.EmbeddedListen).
			Str("embedded_dir", cfg.EmbeddedDir).Bool("embedded_sync_always", cfg.EmbeddedSyncAlways).Bool("embedded_group_fsync", cfg.groupFsync())
		if !cfg.EmbeddedSyncAlways {
			log.Warn().Msg("NATS_EMBEDDED_SYNC_ALWAYS=false: a power cut or kernel crash may lose the last two minutes of webhooks answered 200")
		}
	} else {
		ev = ev.Dict("nats", cfg.NATS.LogDict())
	}
	ev = ev.Bool("atomic_batches", cfg.batches())
	ev.Msg("bridge starting")
}
