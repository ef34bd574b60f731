// Package proctest runs this module's programs as processes in tests: each package is built
// once per test binary, every wait is bounded, the process is killed when the test ends and
// its output is attached to the log of a failed test.
package proctest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ayrbridge/ayrbridge/internal/proc"
)

// buildTimeout bounds one go build; a cold cache on a small machine takes about a minute.
const buildTimeout = 5 * time.Minute

var (
	mu     sync.Mutex
	dir    string // set by Main; the binaries live there until the test binary exits
	builds = map[string]*build{}
)

type build struct {
	once sync.Once
	bin  string
	err  error
}

// Main runs the tests and removes the binaries Build made. A package whose tests call Build
// uses it as its TestMain:
//
//	func TestMain(m *testing.M) { proctest.Main(m) }
func Main(m *testing.M) {
	d, err := os.MkdirTemp("", "proctest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "proctest:", err)
		os.Exit(1)
	}
	mu.Lock()
	dir = d
	mu.Unlock()
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// Build compiles pkg (an import path, or ./path from the module root) the first time any
// test asks for it and returns the binary; later calls, from any test, reuse it.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	mu.Lock()
	if dir == "" {
		mu.Unlock()
		// Without Main the binaries would outlive the test binary, one copy per run.
		t.Fatal("proctest.Build needs proctest.Main as the package's TestMain")
	}
	b := builds[pkg]
	if b == nil {
		b = &build{bin: filepath.Join(dir, strings.NewReplacer("/", "_", ".", "_").Replace(pkg))}
		builds[pkg] = b
	}
	mu.Unlock()
	b.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		b.err = proc.Build(ctx, b.bin, pkg)
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.bin
}

// Start starts a program as cfg says, capturing its output. When the test ends the process
// is killed (a test that wants a graceful stop does it in its own cleanup, registered
// after Start, which runs first) and, if the test failed, its output goes to the test log.
func Start(t testing.TB, cfg proc.Config) *proc.Proc {
	t.Helper()
	cfg.Capture = true
	p, err := proc.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("output of %s:\n%s", filepath.Base(cfg.Bin), p.Output())
		}
	})
	return p
}

// FreePorts is proc.FreePorts for tests.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := proc.FreePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// SkipShort skips t under -short, naming the test and why it is slow, so `go test -short`
// says what it left out.
func SkipShort(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("-short: skipping %s, which %s", t.Name(), why)
	}
}
