package natstest

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ayrbridge/ayrbridge/internal/proctest"
)

// Hub is a JetStream server in domain "hub" with a leaf port, as edges dial it. Its ports and
// store stay fixed across Restart, so edges and clients find it again where it was.
type Hub struct {
	t                    testing.TB
	dir                  string
	clientPort, leafPort int
	srv                  *server.Server
}

// RunHub starts a hub on free loopback ports with a store under a new t.TempDir(); it is shut
// down when the test ends.
func RunHub(t testing.TB) *Hub {
	t.Helper()
	ports := proctest.FreePorts(t, 2) // in one call, so the two differ
	h := &Hub{t: t, dir: t.TempDir(), clientPort: ports[0], leafPort: ports[1]}
	h.Start()
	t.Cleanup(h.Stop)
	return h
}

// Start starts the hub (again) on its ports and store and waits until it takes connections.
func (h *Hub) Start() {
	h.t.Helper()
	opts := &server.Options{
		ServerName: "hub",
		Host:       "127.0.0.1", Port: h.clientPort,
		JetStream: true, JetStreamDomain: "hub", StoreDir: h.dir,
		LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: h.leafPort},
		NoLog:    true, NoSigs: true,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		h.t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(20 * time.Second) {
		h.t.Fatal("hub not ready")
	}
	h.srv = ns
}

// Stop shuts the hub down, as a crash would look to its leaf nodes; it does nothing when stopped.
func (h *Hub) Stop() {
	if h.srv == nil {
		return
	}
	h.srv.Shutdown()
	h.srv.WaitForShutdown()
	h.srv = nil
}

// Server is the running server, nil while stopped.
func (h *Hub) Server() *server.Server { return h.srv }

// ClientURL is the hub's nats:// URL for clients.
func (h *Hub) ClientURL() string {
	return "nats://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(h.clientPort))
}

// LeafAddr is the host:port edges dial (through a Proxy in link tests).
func (h *Hub) LeafAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(h.leafPort)) }
