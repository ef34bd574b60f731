// Package proc builds Go programs of this module and runs them as child processes with a
// bounded wait for everything: the tests that run the real binaries (through proctest) and
// the benchmark programs share it. It returns errors and knows nothing of testing.
package proc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Build compiles pkg (an import path, or a path like ./cmd/bridge relative to the module
// root) into bin. It runs from the module root, so callers in any directory name packages
// the same way.
func Build(ctx context.Context, bin, pkg string) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	return nil
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("find the module root (run from inside the repository): %v", err)
	}
	return filepath.Dir(gomod), nil
}

// Config says how to start a program.
type Config struct {
	Bin  string
	Args []string
	// Env is added to this process's environment, or with CleanEnv is the whole of it.
	Env      []string
	CleanEnv bool
	// Output, when set, receives everything the program writes to stdout and stderr.
	Output io.Writer
	// Capture keeps the output for Output(), so a failing test can show it.
	Capture bool
	// Line, when set, is called with each line of output (without its newline), from one
	// goroutine, in order.
	Line func(line []byte)
}

// Proc is a program started as a child process. Its methods may be called from any
// goroutine; none waits longer than it is told.
type Proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process exited and all its output was read
	err  error         // the exit status, set before done is closed

	mu  sync.Mutex
	out bytes.Buffer
}

// Start starts cfg.Bin. Output is read until the process exits; a line callback that blocks
// holds the program up when the pipe fills, so it should return quickly.
func Start(cfg Config) (*Proc, error) {
	cmd := exec.Command(cfg.Bin, cfg.Args...)
	cmd.Env = append(os.Environ(), cfg.Env...)
	if cfg.CleanEnv {
		cmd.Env = append([]string(nil), cfg.Env...)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("start %s: %w", cfg.Bin, err)
	}
	pw.Close() // the child holds its own copy; the read side sees EOF when it exits
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	read := make(chan struct{})
	go func() {
		defer close(read)
		p.read(pr, cfg)
	}()
	go func() {
		err := cmd.Wait()
		// A grandchild that inherited the pipe could keep it open: do not wait for it forever.
		select {
		case <-read:
		case <-time.After(5 * time.Second):
		}
		pr.Close()
		p.err = err
		close(p.done)
	}()
	return p, nil
}

func (p *Proc) read(r io.Reader, cfg Config) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if cfg.Output != nil {
				_, _ = cfg.Output.Write(line)
			}
			if cfg.Capture {
				p.mu.Lock()
				p.out.Write(line)
				p.mu.Unlock()
			}
			if cfg.Line != nil {
				cfg.Line(bytes.TrimSuffix(line, []byte{'\n'}))
			}
		}
		if err != nil {
			return
		}
	}
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited and its output has been read.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the exit status (nil for status 0) once Done is closed, nil before.
func (p *Proc) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Output is what the program wrote so far, when started with Capture.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Signal sends sig; it does nothing once the process has exited.
func (p *Proc) Signal(sig os.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

// Wait waits up to d for the process to exit and returns its exit status (nil for status 0);
// exited is false when it was still running after d.
func (p *Proc) Wait(d time.Duration) (status error, exited bool) {
	select {
	case <-p.done:
		return p.err, true
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err, true
	case <-t.C:
		return nil, false
	}
}

// Stop sends SIGTERM and waits up to grace for the exit; a process still running then is
// killed, and Stop says so. Otherwise it returns the exit status.
func (p *Proc) Stop(grace time.Duration) error {
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	if status, ok := p.Wait(grace); ok {
		return status
	}
	p.Kill()
	return fmt.Errorf("%s still running %s after SIGTERM: killed", filepath.Base(p.cmd.Path), grace)
}

// Kill sends SIGKILL and waits for the exit (a few seconds at most: SIGKILL cannot be
// caught, so a longer wait means the kernel is stuck and waiting longer would not help).
func (p *Proc) Kill() {
	_ = p.Signal(syscall.SIGKILL)
	p.Wait(10 * time.Second)
}

// FreePorts returns n distinct loopback TCP ports that were free a moment ago; all are held
// open together while they are chosen, so none is returned twice.
func FreePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
