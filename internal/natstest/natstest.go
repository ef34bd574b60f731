// Package natstest starts real nats-servers with JetStream for tests, through the same
// publish.StartEmbedded code the bridge runs when no NATS_URL is set.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ayrbridge/ayrbridge/publish"
)

// RunServer starts a JetStream server on a random loopback port with a store under dir (a new
// t.TempDir() when dir is empty) and shuts it down when the test ends.
func RunServer(t testing.TB, dir string) *server.Server {
	t.Helper()
	return RunServerAt(t, dir, "127.0.0.1:0")
}

// RunServerAt is RunServer on a given host:port, so a test can restart a server where its
// clients will reconnect: shut the first one down, then RunServerAt its Addr() and store.
func RunServerAt(t testing.TB, dir, listen string) *server.Server {
	t.Helper()
	return RunServerWith(t, publish.EmbeddedConfig{Listen: listen, StoreDir: dir})
}

// RunServerWith is RunServer with cfg; an empty StoreDir is a new t.TempDir() and an empty
// Listen a random loopback port.
func RunServerWith(t testing.TB, cfg publish.EmbeddedConfig) *server.Server {
	t.Helper()
	if cfg.StoreDir == "" {
		cfg.StoreDir = t.TempDir()
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	ns, err := publish.StartEmbedded(cfg, zerolog.Nop())
	if err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// Connect opens a client connection to ns, closed when the test ends.
func Connect(t testing.TB, ns *server.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatalf("connect to %s: %v", ns.ClientURL(), err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

// ConnectURL opens a JetStream client of the server at url, closed when the test ends; like the
// bridge's own connection it reconnects for as long as the server is away, so it outlives a
// server's restarts.
func ConnectURL(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := publish.Connect(publish.ConnConfig{URLs: []string{url}}, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return js
}

// Messages returns every message stored in stream, in order.
func Messages(t testing.TB, js jetstream.JetStream, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := t.Context()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", stream, err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted or expired
		}
		out = append(out, m)
	}
	return out
}

// Eventually calls f until it returns nil, failing the test with f's last error after wait.
func Eventually(t testing.TB, wait time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", wait, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
