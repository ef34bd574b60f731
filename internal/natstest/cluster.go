package natstest

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ayrbridge/ayrbridge/internal/proc"
	"github.com/ayrbridge/ayrbridge/internal/proctest"
)

// RunCluster starts n JetStream servers on loopback that form one cluster, and waits until
// JetStream has a meta leader. Each server stores under its own t.TempDir().
func RunCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	ports := proctest.FreePorts(t, 2*n) // in one call, so no client port is also a route port
	clientPorts, routePorts := ports[:n], ports[n:]
	var routes []*url.URL
	for _, p := range routePorts {
		routes = append(routes, &url.URL{Scheme: "nats", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(p))})
	}
	servers := make([]*server.Server, n)
	for i := range n {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1", Port: clientPorts[i],
			JetStream: true, StoreDir: t.TempDir(),
			Cluster: server.ClusterOpts{Name: "ayrbridge-test", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:  routes,
			NoLog:   true, NoSigs: true,
		}
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go ns.Start()
		t.Cleanup(func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		})
		servers[i] = ns
	}
	for _, ns := range servers {
		if !ns.ReadyForConnections(20 * time.Second) {
			t.Fatalf("%s not ready", ns.Name())
		}
	}
	Eventually(t, 30*time.Second, func() error {
		for _, ns := range servers {
			if ns.JetStreamIsLeader() {
				return nil
			}
		}
		return fmt.Errorf("no JetStream meta leader yet")
	})
	return servers
}

// ServerProcess is a nats-server running as a child process, so a test can kill it with
// SIGKILL and start it again on the same port and store.
type ServerProcess struct {
	t    testing.TB
	cfg  proc.Config
	proc *proc.Proc
	URL  string
}

// StartServerProcess builds nats-server from the module version in go.mod (once per test
// binary: the package needs proctest.Main) and runs it with JetStream on a free loopback
// port and a store under t.TempDir().
func StartServerProcess(t testing.TB) *ServerProcess {
	t.Helper()
	bin := proctest.Build(t, "github.com/nats-io/nats-server/v2")
	port := proctest.FreePorts(t, 1)[0]
	p := &ServerProcess{t: t, URL: fmt.Sprintf("nats://127.0.0.1:%d", port), cfg: proc.Config{Bin: bin,
		Args: []string{"-js", "-sd", t.TempDir(), "-a", "127.0.0.1", "-p", strconv.Itoa(port)}}}
	p.Start()
	return p
}

// Start starts the process (again) and waits until it accepts connections.
func (p *ServerProcess) Start() {
	p.t.Helper()
	p.proc = proctest.Start(p.t, p.cfg)
	host := p.URL[len("nats://"):]
	Eventually(p.t, 20*time.Second, func() error {
		select {
		case <-p.proc.Done():
			p.t.Fatalf("nats-server exited at start:\n%s", p.proc.Output())
		default:
		}
		c, err := net.Dial("tcp", host)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// Kill stops the process with SIGKILL and waits for it; it does nothing when not running.
func (p *ServerProcess) Kill() {
	if p.proc != nil {
		p.proc.Kill()
	}
}
