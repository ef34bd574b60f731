//go:build linux

package powercut

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Deadlines for the waits of Mount, Cut and Close, so a stuck kernel or process fails a test
// instead of hanging it.
const (
	mountTimeout  = 10 * time.Second // the kernel's INIT and go-fuse's poll probe
	freezeTimeout = 10 * time.Second // requests already changing the backing dir when a cut starts
	busyTimeout   = 2 * time.Second  // the kernel letting go of a killed process's files
	exitTimeout   = 5 * time.Second  // the server seeing its connection end after the unmount
)

// FS is a loopback mount whose unsynced changes a Cut throws away.
type FS struct {
	backing, mountpoint string
	opts                Options

	cutMu  sync.Mutex // serializes Cut and Close, which replace cur
	cur    *mount     // nil once closed, or after a remount failed
	closed bool
	stale  []*mount // mounts detached while still in use, whose servers Close waits for again

	logMu sync.Mutex
	logs  map[fileKey]*fileLog

	writes, fsyncs, syncedWrites atomic.Int64
}

// mount is one FUSE server over the backing dir; a cut freezes it and makes a new one.
type mount struct {
	fs     *FS
	frozen atomic.Bool
	// gate is held for reading by each request that changes the backing dir, from its check of
	// frozen until its change is made and logged, and for writing once by the freeze: after
	// that no change can land, logged or not.
	gate   sync.RWMutex
	server *fuse.Server
	served chan struct{} // closed when the server stops

	hmu     sync.Mutex
	handles map[*fileHandle]struct{} // open files, to close if the kernel never releases them
}

// enter admits a request that changes the backing dir; leave must follow if it did.
func (m *mount) enter() bool {
	m.gate.RLock()
	if m.frozen.Load() {
		m.gate.RUnlock()
		return false
	}
	return true
}

func (m *mount) leave() { m.gate.RUnlock() }

// live admits a request that changes nothing, which need not hold the freeze back.
func (m *mount) live() bool { return !m.frozen.Load() }

// freeze makes every later request fail, and waits for those changing the backing dir.
func (m *mount) freeze() error {
	m.frozen.Store(true)
	done := make(chan struct{})
	go func() {
		m.gate.Lock()
		m.gate.Unlock()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(freezeTimeout):
		return fmt.Errorf("powercut: a request to the file system did not finish within %v of the cut", freezeTimeout)
	}
}

// Available reports why power-cut tests cannot run here (not root, no /dev/fuse, mounting
// refused), or nil.
func Available() error { return availability() }

var availability = sync.OnceValue(func() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("powercut: mounting FUSE without fusermount needs root, and euid is %d", os.Geteuid())
	}
	dev, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("powercut: %w", err)
	}
	dev.Close()
	// A container may open /dev/fuse and still refuse the mount.
	dir, err := os.MkdirTemp("", "powercut-probe-")
	if err != nil {
		return fmt.Errorf("powercut: %w", err)
	}
	defer os.RemoveAll(dir)
	backing, mnt := filepath.Join(dir, "b"), filepath.Join(dir, "m")
	if err := errors.Join(os.Mkdir(backing, 0o755), os.Mkdir(mnt, 0o755)); err != nil {
		return fmt.Errorf("powercut: %w", err)
	}
	f, err := Mount(backing, mnt, Options{})
	if err != nil {
		return err
	}
	return f.Close()
})

// Mount serves backing at mountpoint (both existing directories) until Close.
func Mount(backing, mountpoint string, opts Options) (*FS, error) {
	var err error
	for _, d := range []*string{&backing, &mountpoint} {
		if *d, err = filepath.Abs(*d); err != nil {
			return nil, fmt.Errorf("powercut: %w", err)
		}
		if st, err := os.Stat(*d); err != nil {
			return nil, fmt.Errorf("powercut: %w", err)
		} else if !st.IsDir() {
			return nil, fmt.Errorf("powercut: %s is not a directory", *d)
		}
	}
	f := &FS{backing: backing, mountpoint: mountpoint, opts: opts, logs: make(map[fileKey]*fileLog)}
	if f.cur, err = f.mount(); err != nil {
		return nil, err
	}
	return f, nil
}

// mount starts a server over the backing dir at the mountpoint.
func (f *FS) mount() (*mount, error) {
	m := &mount{fs: f, served: make(chan struct{}), handles: make(map[*fileHandle]struct{})}
	lb, err := fs.NewLoopbackRoot(f.backing)
	if err != nil {
		return nil, fmt.Errorf("powercut: %w", err)
	}
	root := &node{LoopbackNode: lb.(*fs.LoopbackNode), m: m}
	second := time.Second
	opts := &fs.Options{
		EntryTimeout: &second,
		AttrTimeout:  &second,
		MountOptions: fuse.MountOptions{
			DirectMountStrict: true, // there is no fusermount to fall back to
			AllowOther:        true, // the processes under test may run as another user
			FsName:            "powercut",
			Name:              "powercut",
			// Without a writeback cache every write reaches the server before write(2)
			// returns; with passthrough none would reach it at all.
			DisabledCapabilities: fuse.CAP_WRITEBACK_CACHE | fuse.CAP_PASSTHROUGH,
		},
	}
	server, err := fuse.NewServer(fs.NewNodeFS(root, opts), f.mountpoint, &opts.MountOptions)
	if err != nil {
		return nil, fmt.Errorf("powercut: mount %s: %w", f.mountpoint, err)
	}
	m.server = server
	go func() {
		server.Serve()
		close(m.served)
	}()
	ready := make(chan error, 1)
	go func() { ready <- server.WaitMount() }()
	select {
	case err = <-ready:
	case <-time.After(mountTimeout):
		err = fmt.Errorf("not serving after %v", mountTimeout)
	}
	if err != nil {
		m.freeze()
		return nil, errors.Join(fmt.Errorf("powercut: mount %s: %w", f.mountpoint, err), m.unmount(f.mountpoint))
	}
	return m, nil
}

// unmount takes m off dir and waits for its server to stop. If the mount stays busy, it aborts
// the FUSE connection and detaches the mount, and says so with errBusy.
func (m *mount) unmount(dir string) error {
	var busy error
	for deadline := time.Now().Add(busyTimeout); ; time.Sleep(10 * time.Millisecond) {
		err := syscall.Unmount(dir, 0)
		if err == nil || err == syscall.EINVAL { // EINVAL: nothing is mounted there any more
			break
		}
		if err == syscall.EBUSY && time.Now().Before(deadline) {
			continue
		}
		// MNT_FORCE aborts the connection, failing every request still waiting on it (from a
		// process the kill missed, or from a thread of this very process, which would otherwise
		// wait for this server forever), so the server can stop; MNT_DETACH frees dir for the
		// next mount although files there are still open.
		if err := syscall.Unmount(dir, syscall.MNT_FORCE|syscall.MNT_DETACH); err != nil && err != syscall.EINVAL {
			return fmt.Errorf("powercut: unmount %s: %w", dir, err)
		}
		busy = fmt.Errorf("powercut: %s: %w", dir, errBusy)
		break
	}
	return errors.Join(busy, m.wait(exitTimeout))
}

// errBusy says something still used the mount when it was cut or closed: a process the kill
// missed, a file left open, a working directory there.
var errBusy = errors.New("still in use when unmounted, so it was aborted and detached")

// errInUse says a detached mount's server still runs although its connection was aborted.
var errInUse = errors.New("the server of the old mount did not stop")

// wait waits for m's server to stop, then closes the files the kernel never released.
func (m *mount) wait(timeout time.Duration) error {
	select {
	case <-m.served:
	case <-time.After(timeout):
		return fmt.Errorf("powercut: %s: %w", m.fs.mountpoint, errInUse)
	}
	m.hmu.Lock()
	defer m.hmu.Unlock()
	for h := range m.handles {
		h.close()
		delete(m.handles, h)
	}
	return nil
}

// Cut simulates a power cut: from now on every file-system request fails with EIO and changes
// nothing; kill is called (the test SIGKILLs its processes there and waits for them to exit);
// then the file system is unmounted, every change not covered by an fsync is undone in the
// backing directory, and it is mounted again at the same mountpoint. It returns what was
// undone.
func (f *FS) Cut(kill func()) (Undone, error) {
	f.cutMu.Lock()
	defer f.cutMu.Unlock()
	if f.cur == nil {
		return Undone{}, errors.New("powercut: Cut on a file system that is closed or failed to mount again")
	}
	m := f.cur
	if err := m.freeze(); err != nil {
		return Undone{}, err
	}
	if kill != nil {
		kill()
	}
	// A busy mount is reported, not fatal: the frozen server changes nothing any more, so the
	// undo is safe, but a process that outlived the cut could go on in the new mount.
	unmountErr := m.unmount(f.mountpoint)
	if unmountErr != nil && !errors.Is(unmountErr, errBusy) && !errors.Is(unmountErr, errInUse) {
		// Still mounted: a new mount on top would hide it, not replace it.
		return Undone{}, unmountErr
	}
	if errors.Is(unmountErr, errInUse) {
		f.stale = append(f.stale, m)
	}
	u, undoErr := f.undo()
	var mountErr error
	f.cur, mountErr = f.mount()
	return u, errors.Join(unmountErr, undoErr, mountErr)
}

// Stats are counters since Mount: Writes (write requests seen by the layer), Fsyncs
// (fsync/fdatasync requests), SyncedWrites (writes on O_SYNC/O_DSYNC handles).
func (f *FS) Stats() Stats {
	return Stats{Writes: f.writes.Load(), Fsyncs: f.fsyncs.Load(), SyncedWrites: f.syncedWrites.Load()}
}

// Dir is the mountpoint, where the processes under test keep their data.
func (f *FS) Dir() string { return f.mountpoint }

// Close unmounts (best effort: a busy mount is aborted and detached) and leaves unsynced changes
// in the backing dir.
func (f *FS) Close() error {
	f.cutMu.Lock()
	defer f.cutMu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	var errs []error
	if m := f.cur; m != nil {
		f.cur = nil
		errs = append(errs, m.freeze())
		if err := m.unmount(f.mountpoint); !errors.Is(err, errBusy) || errors.Is(err, errInUse) {
			errs = append(errs, err) // best effort: forcing a busy mount off is no failure
		}
	}
	for _, m := range f.stale {
		errs = append(errs, m.wait(time.Second))
	}
	f.stale = nil
	f.logMu.Lock()
	logs := f.logs
	f.logs = make(map[fileKey]*fileLog)
	f.logMu.Unlock()
	for _, l := range logs {
		l.mu.Lock()
		if !l.dead {
			l.retire()
		}
		l.mu.Unlock()
	}
	return errors.Join(errs...)
}
