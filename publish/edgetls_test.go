package publish_test

import (
	"fmt"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/ayrbridge/ayrbridge/internal/tlstest"
	"github.com/ayrbridge/ayrbridge/publish"
)

// TestEdgeDialsHubWithPrivateCA: a hub whose leaf port serves a certificate from a private CA
// is reached by an edge given that CA (NATS_HUB_TLS_CA), and not by one without it, which
// shows the hub's certificate is really checked.
func TestEdgeDialsHubWithPrivateCA(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	caFile := filepath.Join(dir, "ca.pem")
	ca.WriteCAFile(t, caFile)
	cert, key := filepath.Join(dir, "hub.pem"), filepath.Join(dir, "hub-key.pem")
	ca.Issue(t, cert, key, "127.0.0.1", "localhost")
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	opts := &server.Options{
		ServerName: "hub", Host: "127.0.0.1", Port: -1, JetStream: true, JetStreamDomain: "hub", StoreDir: t.TempDir(),
		LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: -1, TLSConfig: tc}, NoLog: true, NoSigs: true,
	}
	hub, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go hub.Start()
	t.Cleanup(func() { hub.Shutdown(); hub.WaitForShutdown() })
	if !hub.ReadyForConnections(10 * time.Second) {
		t.Fatal("hub not ready")
	}
	// The server writes the leaf port it picked back into opts before it is ready.
	leaf := &url.URL{Scheme: "tls", Host: fmt.Sprintf("127.0.0.1:%d", opts.LeafNode.Port)}
	edge := func(caFile string) *server.Server {
		ns, err := publish.StartEmbedded(publish.EmbeddedConfig{
			Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Name: "ayr-edge-tls", Domain: "ayr-edge-tls",
			Hub: &publish.HubLink{URLs: []*url.URL{leaf}, TLSCA: caFile, Redial: 250 * time.Millisecond},
		}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
		return ns
	}
	withCA := edge(caFile)
	waitLinked(t, withCA)
	withCA.Shutdown()
	withCA.WaitForShutdown()

	// The control: the same edge without the CA never links, the certificate being unknown.
	without := edge("")
	time.Sleep(2 * time.Second)
	if n := without.NumLeafNodes(); n != 0 {
		t.Fatalf("an edge without the private CA linked (%d leaf links): the hub's certificate is not checked", n)
	}
}
