package natstest

import (
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// RunCluster starts n JetStream servers on loopback that form one cluster, and waits until
// JetStream has a meta leader. Each server stores under its own t.TempDir().
func RunCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	clientPorts, routePorts := freePorts(t, n), freePorts(t, n)
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

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// ServerProcess is a nats-server running as a child process, so a test can kill it with
// SIGKILL and start it again on the same port and store.
type ServerProcess struct {
	t    testing.TB
	bin  string
	args []string
	cmd  *exec.Cmd
	exit chan error
	URL  string
}

// StartServerProcess builds nats-server from the module version in go.mod (cached by the go
// command) and runs it with JetStream on a free loopback port and a store under t.TempDir().
func StartServerProcess(t testing.TB) *ServerProcess {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nats-server")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput(); err != nil {
		t.Fatalf("build nats-server: %v\n%s", err, out)
	}
	port := freePorts(t, 1)[0]
	p := &ServerProcess{t: t, bin: bin, URL: fmt.Sprintf("nats://127.0.0.1:%d", port),
		args: []string{"-js", "-sd", t.TempDir(), "-a", "127.0.0.1", "-p", strconv.Itoa(port)}}
	p.Start()
	t.Cleanup(func() { p.Kill() })
	return p
}

// Start starts the process (again) and waits until it accepts connections.
func (p *ServerProcess) Start() {
	p.t.Helper()
	p.cmd = exec.Command(p.bin, p.args...)
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.exit = make(chan error, 1)
	go func(cmd *exec.Cmd, exit chan error) { exit <- cmd.Wait() }(p.cmd, p.exit)
	host := p.URL[len("nats://"):]
	Eventually(p.t, 20*time.Second, func() error {
		c, err := net.Dial("tcp", host)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// Kill stops the process with SIGKILL and waits for it; it does nothing when not running.
func (p *ServerProcess) Kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exit
	p.cmd = nil
}
