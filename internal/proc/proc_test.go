package proc

import (
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the child: with PROC_TEST_CHILD set it behaves as told there
// instead of running the tests, so no other program has to be built.
func TestMain(m *testing.M) {
	switch os.Getenv("PROC_TEST_CHILD") {
	case "":
		os.Exit(m.Run())
	case "print":
		os.Stdout.WriteString("out line\n")
		os.Stderr.WriteString("err line\n")
		os.Exit(3)
	case "term":
		// Exits 0 on SIGTERM, like the bridge.
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		os.Stdout.WriteString("ready\n")
		<-c
		os.Exit(0)
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
		os.Stdout.WriteString("ready\n")
		time.Sleep(time.Minute)
	}
}

// child starts this test binary as the child mode and waits for its "ready" line.
func child(t *testing.T, mode string, cfg Config) *Proc {
	t.Helper()
	ready := make(chan struct{})
	var once sync.Once
	line := cfg.Line
	cfg.Bin, cfg.Env = os.Args[0], append(cfg.Env, "PROC_TEST_CHILD="+mode)
	cfg.Line = func(b []byte) {
		if string(b) == "ready" {
			once.Do(func() { close(ready) })
		}
		if line != nil {
			line(b)
		}
	}
	p, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	if mode != "print" {
		select {
		case <-ready:
		case <-time.After(10 * time.Second):
			t.Fatal("child not ready")
		}
	}
	return p
}

func TestOutputAndExitStatus(t *testing.T) {
	var lines []string // appended from the one reading goroutine, read after Done
	p := child(t, "print", Config{Capture: true, Line: func(b []byte) { lines = append(lines, string(b)) }})
	status, exited := p.Wait(10 * time.Second)
	if !exited {
		t.Fatal("child still running")
	}
	if status == nil || !strings.Contains(status.Error(), "exit status 3") || p.Err() != status {
		t.Errorf("status %v, Err %v, want exit status 3", status, p.Err())
	}
	for _, want := range []string{"out line", "err line"} {
		if !strings.Contains(p.Output(), want+"\n") || !strings.Contains(strings.Join(lines, "|"), want) {
			t.Errorf("output %q, lines %q: want %q in both", p.Output(), lines, want)
		}
	}
}

func TestStop(t *testing.T) {
	if err := child(t, "term", Config{}).Stop(10 * time.Second); err != nil {
		t.Errorf("Stop of a child that exits on SIGTERM: %v", err)
	}
	p := child(t, "stubborn", Config{})
	start := time.Now()
	if err := p.Stop(200 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Stop of a child that ignores SIGTERM = %v, want it killed", err)
	}
	if _, exited := p.Wait(0); !exited || time.Since(start) > 5*time.Second {
		t.Errorf("exited %t after %s", exited, time.Since(start))
	}
}

func TestWaitIsBounded(t *testing.T) {
	p := child(t, "stubborn", Config{})
	if _, exited := p.Wait(50 * time.Millisecond); exited {
		t.Fatal("a sleeping child exited")
	}
	p.Kill()
	if _, exited := p.Wait(0); !exited {
		t.Fatal("still running after Kill")
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("Signal after exit = %v, want nil", err)
	}
}

func TestFreePortsDistinct(t *testing.T) {
	ports, err := FreePorts(16)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] || p == 0 {
			t.Fatalf("ports %v repeat or hold 0", ports)
		}
		seen[p] = true
	}
}
